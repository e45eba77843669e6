"""Issue #10, defect 9: Prefect's task-tier retry delay follows the raising block's
`circuit_reset_timeout_s`, not a fixed 30 s; measured in real flows from the task run's
state history (the AwaitingRetry state's scheduled time) and from the wall clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from defect_support import MESSAGES, sim_model
from prefect import flow
from prefect.client.orchestration import get_client
from registry_support import clear_resilience

from prefect_openai_chat import ChatResult, achat_completion, chat_completion
from prefect_openai_chat.simulator import Simulator


@pytest.fixture(autouse=True)
def _harness(prefect_harness: None) -> None:
    clear_resilience()


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=13) as simulator:
        yield simulator


def scheduled_delays(task_run_id: Any) -> list[float]:
    """Seconds between each AwaitingRetry state and the time it was scheduled for."""
    with get_client(sync_client=True) as client:
        states = client.read_task_run_states(task_run_id)
    return [
        (s.state_details.scheduled_time - s.timestamp).total_seconds()
        for s in states
        if s.name == "AwaitingRetry" and s.state_details.scheduled_time is not None
    ]


@pytest.mark.parametrize("reset_s", [1.0, 2.5])
def test_sync_task_waits_the_blocks_delay(sim: Simulator, reset_s: float) -> None:
    sim.configure(script=["503"])
    sim.reset()
    model = sim_model(sim, max_attempts=1, task_retries=1, circuit_reset_timeout_s=reset_s)

    @flow
    def one_call() -> dict[str, Any]:
        state = chat_completion(model, MESSAGES, return_state=True)
        return {"id": state.state_details.task_run_id, "result": state.result()}

    started = time.monotonic()
    try:
        out = one_call()
    finally:
        sim.configure(script=[])
    elapsed = time.monotonic() - started
    assert isinstance(out["result"], ChatResult)
    assert sim.stats().by_status == {503: 1, 200: 1}
    (delay,) = scheduled_delays(out["id"])
    assert delay == pytest.approx(reset_s, abs=0.25)
    assert reset_s <= elapsed < reset_s + 20.0  # never the fixed 30 s


async def test_async_task_waits_the_blocks_delay(sim: Simulator) -> None:
    sim.configure(script=["503"])
    sim.reset()
    model = sim_model(sim, max_attempts=1, task_retries=1, circuit_reset_timeout_s=1.5)

    @flow
    async def one_call() -> dict[str, Any]:
        state = await achat_completion(model, MESSAGES, return_state=True)
        return {"id": state.state_details.task_run_id, "result": await state.result()}

    try:
        out = await one_call()
    finally:
        sim.configure(script=[])
    assert isinstance(out["result"], ChatResult)
    (delay,) = scheduled_delays(out["id"])
    assert delay == pytest.approx(1.5, abs=0.25)


def test_an_explicit_delay_still_wins(sim: Simulator) -> None:
    sim.configure(script=["503"])
    sim.reset()
    model = sim_model(sim, max_attempts=1, task_retries=1, circuit_reset_timeout_s=30.0)
    fixed = chat_completion.with_options(retry_delay_seconds=0.5)

    @flow
    def one_call() -> dict[str, Any]:
        state = fixed(model, MESSAGES, return_state=True)
        return {"id": state.state_details.task_run_id, "result": state.result()}

    try:
        out = one_call()
    finally:
        sim.configure(script=[])
    assert isinstance(out["result"], ChatResult)
    (delay,) = scheduled_delays(out["id"])
    assert delay == pytest.approx(0.5, abs=0.25)
