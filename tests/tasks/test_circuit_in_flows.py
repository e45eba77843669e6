"""The circuit breaker as a flow meets it: it opens after N outage errors, then fails fast
with a `CircuitOpenError` naming the key and the next probe, emits Prefect events and log
lines on every state change, lets one probe through when half-open and closes on success."""

from __future__ import annotations

import asyncio
import logging
import re
import statistics
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import openai
import pytest
from prefect import flow, task
from prefect.events.worker import EventsWorker
from prefect.testing.fixtures import AssertingEventsClient, asserting_events_worker
from resilience_support import MESSAGES, clear_resilience, sim_model

from prefect_openai_chat import ChatResult, achat_completion, chat_completion
from prefect_openai_chat.blocks.assembly import RUNNERS
from prefect_openai_chat.errors import CircuitOpenError
from prefect_openai_chat.resilience import circuit_key
from prefect_openai_chat.simulator import Simulator

__all__ = ["asserting_events_worker"]  # the fixture, imported for pytest to find

SYNC_CHAT = chat_completion.with_options(retry_delay_seconds=0)
ASYNC_CHAT = achat_completion.with_options(retry_delay_seconds=0)
OUTAGE = {"extra_headers": {"x-simulator-fault": "503"}}


@pytest.fixture(scope="module")
def server() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=5) as simulator:
        yield simulator


@pytest.fixture
def sim(server: Simulator) -> Simulator:
    server.reset()
    server.configure(fault_rates={}, ttft_s=0.0)
    clear_resilience()
    return server


def circuit_events(worker: EventsWorker) -> list[Any]:
    worker.drain()
    client = worker._client
    assert isinstance(client, AssertingEventsClient)
    return [e for e in client.events if e.event.startswith("prefect-openai-chat.circuit.")]


def test_opens_after_n_outage_errors_then_fails_fast(
    sim: Simulator, asserting_events_worker: EventsWorker, caplog: pytest.LogCaptureFixture
) -> None:
    model = sim_model(
        sim, max_attempts=6, task_retries=0, circuit_failures=3, circuit_reset_timeout_s=60.0
    )
    key = circuit_key(model.endpoint, model.model)

    @flow
    def outage() -> Any:
        state = SYNC_CHAT(model, MESSAGES, **OUTAGE, return_state=True)
        return state.result(raise_on_failure=False)

    before = time.time()
    with caplog.at_level(logging.INFO):
        error = outage()
    # The third 503 opened the circuit; the fourth attempt met it and was never sent.
    assert sim.stats().requests == 3
    assert isinstance(error, CircuitOpenError)
    assert isinstance(error.__cause__, openai.InternalServerError)
    assert error.key == key and key in str(error)
    assert before + 60.0 <= error.retry_at <= time.time() + 60.0
    # The next probe in seconds from now and as UTC wall-clock time, not a unix timestamp.
    wall = datetime.fromtimestamp(error.retry_at, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert re.search(r"next probe in (59\.\d|60\.0) s \(at ", str(error)), str(error)
    assert f"(at {wall})" in str(error)
    assert "unix" not in str(error)
    assert "InternalServerError 503" in (error.last_error or "")
    assert RUNNERS.protection(model, key).guard is not None
    assert RUNNERS.protection(model, key).guard.state == "open"

    (opened,) = circuit_events(asserting_events_worker)
    assert opened.event == "prefect-openai-chat.circuit.opened"
    assert opened.resource.id == f"prefect-openai-chat.circuit.{key}"
    assert opened.payload["key"] == key and "503" in opened.payload["last_error"]
    lines = [r for r in caplog.records if "opened" in r.getMessage() and key in r.getMessage()]
    assert lines and all(r.levelno == logging.WARNING for r in lines)
    assert sim.api_key not in caplog.text

    # While open, a call fails in well under a millisecond and sends nothing.
    runner = RUNNERS.build(model)

    async def timed_calls(n: int) -> list[float]:
        spent = []
        for _ in range(n):
            start = time.perf_counter()
            with pytest.raises(CircuitOpenError):
                await runner.complete(MESSAGES)
            spent.append(time.perf_counter() - start)
        return spent

    spent = asyncio.run(timed_calls(200))
    assert statistics.median(spent) < 0.001, f"median {statistics.median(spent) * 1e3:.3f} ms"
    assert sim.stats().requests == 3


def test_client_errors_neither_open_nor_reset_the_streak(sim: Simulator) -> None:
    model = sim_model(sim, max_attempts=1, task_retries=0, circuit_failures=3)
    key = circuit_key(model.endpoint, model.model)

    @flow
    def mixed() -> list[Any]:
        outcomes = []
        for params in [OUTAGE, OUTAGE, {"temperature": 7.0}] * 3 + [OUTAGE]:
            state = SYNC_CHAT(model, MESSAGES, **params, return_state=True)
            outcomes.append(state.result(raise_on_failure=False))
        return outcomes

    outcomes = mixed()
    guard = RUNNERS.protection(model, key).guard
    assert guard is not None and guard.state == "open"
    # 2 outage errors, then 400s in between: the 3rd outage error (5th call) opened it.
    assert isinstance(outcomes[3], openai.InternalServerError)
    assert all(isinstance(o, CircuitOpenError) for o in outcomes[4:])
    assert sim.stats().requests == 4


def test_half_open_lets_one_probe_through_and_closes(
    sim: Simulator, asserting_events_worker: EventsWorker
) -> None:
    reset_timeout = 0.3
    model = sim_model(
        sim,
        max_attempts=2,
        task_retries=0,
        circuit_failures=2,
        circuit_reset_timeout_s=reset_timeout,
    )
    key = circuit_key(model.endpoint, model.model)

    @task(retries=0)
    async def burst(n: int) -> list[ChatResult | BaseException]:
        runner = RUNNERS.build(model)
        calls = [runner.complete(MESSAGES) for _ in range(n)]
        return await asyncio.gather(*calls, return_exceptions=True)

    @flow
    async def recovery() -> dict[str, Any]:
        first = await ASYNC_CHAT(model, MESSAGES, **OUTAGE, return_state=True)
        opened_requests = sim.stats().requests
        await asyncio.sleep(reset_timeout + 0.05)  # the circuit's own reset timeout
        sim.configure(ttft_s=0.2)  # the probe is slow: the other 49 callers arrive meanwhile
        probe_burst = await burst(50)
        sim.configure(ttft_s=0.0)
        after = await burst(5)
        return {
            "first": await first.result(raise_on_failure=False),
            "opened_requests": opened_requests,
            "probe_burst": probe_burst,
            "after": after,
        }

    out = asyncio.run(recovery())
    assert isinstance(out["first"], openai.InternalServerError)
    assert out["opened_requests"] == 2
    answered = [r for r in out["probe_burst"] if isinstance(r, ChatResult)]
    refused = [r for r in out["probe_burst"] if isinstance(r, CircuitOpenError)]
    assert len(answered) == 1 and len(refused) == 49
    assert all(isinstance(r, ChatResult) for r in out["after"])
    assert sim.stats().requests == 2 + 1 + 5
    guard = RUNNERS.protection(model, key).guard
    assert guard is not None and guard.state == "closed"
    names = [e.event.rsplit(".", 1)[1] for e in circuit_events(asserting_events_worker)]
    assert names == ["opened", "half-opened", "closed"]
