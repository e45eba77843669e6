"""Batch API tests: the simulator's files and batches, and `extract_records(via="batch")`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from prefect_openai_chat.simulator import Simulator

FAST_BATCH = {"batch_duration_s": 0.4}
FAST_POLL = {"poll_interval_s": 0.05}


@pytest.fixture
def batch_sim() -> Iterator[Simulator]:
    """A simulator whose batches end in 0.4 s."""
    with Simulator(profile="ideal", seed=11, **FAST_BATCH) as simulator:
        yield simulator
