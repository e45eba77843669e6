"""Fixtures for the simulator's tests, usable by other areas too.

`simulator`: one session-wide `Simulator(profile="ideal", seed=7)`; tests that use it
must not change its settings (use `fresh_simulator` or their own `Simulator(...)`).
`fresh_simulator`: the same server, reset to ideal settings and zeroed counters.
`client`: an `OpenAI` client for it, `max_retries=0` (async tests: `simulator.async_client()`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai import OpenAI

from prefect_openai_chat.simulator import PROFILES, Simulator


@pytest.fixture(scope="session")
def simulator() -> Iterator[Simulator]:
    """A session-wide ideal simulator (seed 7) on a free loopback port."""
    with Simulator(profile="ideal", seed=7) as sim:
        yield sim


@pytest.fixture
def fresh_simulator(simulator: Simulator) -> Iterator[Simulator]:
    """The session simulator with ideal settings (seed 7) and zeroed counters; restored after."""
    defaults = PROFILES["ideal"].model_dump()
    defaults["seed"] = 7
    simulator.configure(**defaults)
    simulator.reset()
    yield simulator
    simulator.configure(**defaults)
    simulator.reset()


@pytest.fixture
def client(simulator: Simulator) -> Iterator[OpenAI]:
    """A sync client for the session simulator."""
    with OpenAI(base_url=simulator.base_url, api_key=simulator.api_key, max_retries=0) as c:
        yield c
