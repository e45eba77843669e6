"""Flow tests run inside real Prefect flows, against the simulator over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flow_support import make_model

from prefect_openai_chat import ChatModel
from prefect_openai_chat.simulator import Simulator


@pytest.fixture(autouse=True)
def _harness(isolated_results: None) -> None:
    """The session's Prefect test API; task results and the record cache per test."""


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=17) as simulator:
        yield simulator


@pytest.fixture
def fresh_sim(sim: Simulator) -> Iterator[Simulator]:
    """The module's simulator with zeroed counters; scripted faults undone after the test."""
    sim.reset()
    yield sim
    sim.configure(script=[], outages=[], ttft_s=0.0)
    sim.reset()


@pytest.fixture
def chat_model(fresh_sim: Simulator) -> ChatModel:
    return make_model(fresh_sim)
