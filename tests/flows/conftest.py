"""Flow tests run inside real Prefect flows, against the simulator over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flow_support import make_model
from prefect.settings import (
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    PREFECT_LOCAL_STORAGE_PATH,
    temporary_settings,
)

from prefect_openai_chat import ChatModel
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.tasks import batch


@pytest.fixture(autouse=True)
def _harness(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The session's Prefect test API; results and the default record cache per test.

    Without this, task results and the record cache (`cache=True`) would live under
    PREFECT_HOME and a second test session would be served from the first one's cache.
    The heartbeat is off because a sync flow waits up to 1 s for its thread on exit.
    """
    record_cache = tmp_path / "default-record-cache.sqlite"
    monkeypatch.setattr(batch, "default_cache_path", lambda: record_cache)
    updates = {
        PREFECT_LOCAL_STORAGE_PATH: tmp_path / "prefect-results",
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
    }
    with temporary_settings(updates=updates):
        yield


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
