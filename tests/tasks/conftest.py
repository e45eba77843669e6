"""Task tests run inside real Prefect flows, against the simulator over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from prefect_openai_chat import ChatModel, OpenAICredentials
from prefect_openai_chat.simulator import Simulator

MODEL = "gpt-4o-mini-2024-07-18"


@pytest.fixture(autouse=True)
def _harness(prefect_harness: None) -> None:
    """Every task test runs against the session's Prefect test API."""


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=11) as simulator:
        yield simulator


@pytest.fixture
def fresh_sim(sim: Simulator) -> Simulator:
    sim.reset()
    return sim


@pytest.fixture
def chat_model(fresh_sim: Simulator) -> ChatModel:
    return ChatModel(
        credentials=OpenAICredentials(base_url=fresh_sim.base_url, api_key=fresh_sim.api_key),
        model=MODEL,
        timeouts={"read_s": 5.0},
    )
