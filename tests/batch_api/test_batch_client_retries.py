"""Issue 23: the Batch API client goes through the one retry policy: the error table (and a
block's `error_overrides`), the server's Retry-After, the retry budget and the circuit, made
by `RUNNERS.batch_client(model)` with the block's settings; against the simulator's Files
and Batch API answering a scripted 429 with Retry-After and a 500."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import openai
import pytest
from model_support import fast_model
from registry_support import clear_resilience

from prefect_openai_chat import CircuitOpenError
from prefect_openai_chat.blocks.assembly import RUNNERS
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.simulator.batch_routes import RETRY_AFTER_S


@pytest.fixture
def sim() -> Iterator[Simulator]:
    clear_resilience()
    with Simulator(profile="ideal", seed=23, batch_duration_s=0.2) as simulator:
        yield simulator
    clear_resilience()


def upload(sim: Simulator, **settings: object) -> tuple[str, float]:
    """Upload one small file through `RUNNERS.batch_client`; (file id, seconds taken)."""
    model = fast_model(sim.base_url, sim.api_key, **settings)

    async def go() -> str:  # the client belongs to the running loop
        return await RUNNERS.batch_client(model).upload(b'{"custom_id": "a"}\n', "in.jsonl")

    started = time.monotonic()
    file_id = asyncio.run(go())
    return file_id, time.monotonic() - started


def test_a_429_waits_the_retry_after_and_a_500_is_retried(sim: Simulator) -> None:
    sim.configure(batch_route_script=["429", "500", ""])
    file_id, took = upload(sim, max_attempts=3, backoff_cap_s=0.01)
    assert file_id.startswith("file-")
    assert sim.stats().files_uploaded == 1
    assert took >= RETRY_AFTER_S * 0.9  # the server's Retry-After was waited, not backoff's


def test_error_overrides_and_max_attempts_of_the_block_apply(sim: Simulator) -> None:
    sim.configure(batch_route_script=["500", ""])
    with pytest.raises(openai.InternalServerError):
        upload(sim, error_overrides={"5xx": "fail"})  # the block says: never retry a 5xx
    assert sim.stats().files_uploaded == 0
    sim.configure(batch_route_script=["500", "500", ""])
    with pytest.raises(openai.InternalServerError) as info:
        upload(sim, max_attempts=2)
    assert "gave up after 2 attempt(s)" in str(info.value.__notes__)
    assert sim.stats().files_uploaded == 0


def test_the_retry_budget_and_the_circuit_of_the_block_apply(sim: Simulator) -> None:
    model = fast_model(sim.base_url, sim.api_key, retry_budget_ratio=0.0, max_attempts=5)
    tripping = fast_model(sim.base_url, sim.api_key, circuit_failures=2, max_attempts=5)

    async def go() -> None:
        client = RUNNERS.batch_client(model)
        assert client.budget is not None and client.budget.ratio == 0.0
        assert client.guard is not None and client.guard.key == f"{model.endpoint}|batch API"
        client.budget.min_retries_per_window = 0  # an empty budget: no retry at all
        sim.configure(batch_route_script=["500", ""])
        with pytest.raises(openai.InternalServerError) as info:
            await client.upload(b"{}\n", "in.jsonl")
        assert "retry budget" in str(info.value.__notes__)

        other = RUNNERS.batch_client(tripping)  # other settings: its own guard
        assert other.guard is not client.guard
        sim.configure(batch_route_script=["500", "500", ""])
        with pytest.raises(CircuitOpenError) as opened:  # outage_patience_s=0: fail once open
            await other.upload(b"{}\n", "in.jsonl")
        assert isinstance(opened.value.__cause__, openai.InternalServerError)
        assert other.guard is not None and other.guard.state == "open"
        assert client.guard.state == "closed"

    asyncio.run(go())
    assert sim.stats().files_uploaded == 0
