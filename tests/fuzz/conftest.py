"""The end-to-end fuzz test: a Prefect harness per session, one simulator per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from prefect_openai_chat.simulator import Simulator


@pytest.fixture(autouse=True)
def _harness(isolated_results: None) -> None:
    """The session's Prefect test API; task results per test."""


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=21) as simulator:
        yield simulator
