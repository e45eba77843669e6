"""An open circuit is waited out within the outage patience; a long outage ends the run fast."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from prefect import flow
from resilience_support import MESSAGES, clear_resilience, sim_model

from prefect_openai_chat import chat_completion
from prefect_openai_chat.blocks.assembly import RUNNERS
from prefect_openai_chat.errors import CircuitOpenError
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.simulator.settings import OutageWindow

SYNC_CHAT = chat_completion.with_options(retry_delay_seconds=0)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=5) as simulator:
        clear_resilience()
        yield simulator
    clear_resilience()


def outage_model(sim: Simulator, **fields: Any) -> Any:
    settings = {
        "max_attempts": 2,
        "task_retries": 2,
        "circuit_failures": 2,
        "circuit_reset_timeout_s": 0.3,
        "outage_patience_s": 1.5,
        **fields,
    }
    return sim_model(sim, **settings)


async def test_a_short_blip_is_ridden_out(sim: Simulator) -> None:
    """16 calls meet a 1 s outage: they wait for the probe instead of failing in bulk."""
    sim.configure(outages=[OutageWindow(start_s=0.0, end_s=1.0)])
    runner = RUNNERS.build(outage_model(sim, max_attempts=4, outage_patience_s=10.0))
    started = time.perf_counter()
    results = await asyncio.gather(*(runner.complete(MESSAGES) for _ in range(16)))
    elapsed = time.perf_counter() - started
    assert all(r.content for r in results)  # nothing failed: all waited within the patience
    assert elapsed >= 1.0  # the outage was waited out (the 10 s patience bounds the wait)
    # 16 first attempts met the outage; then only a probe every 0.3 s reached the server
    assert sim.stats().by_status.get(503, 0) <= 16 + 4


def test_a_long_outage_ends_the_run_within_the_patience(sim: Simulator) -> None:
    sim.configure(outages=[OutageWindow(start_s=0.0)])  # dead from now on
    model = outage_model(sim)

    @flow
    def night() -> list[tuple[Any, float, int]]:
        outcomes = []
        for _ in range(6):
            started = time.perf_counter()
            state = SYNC_CHAT(model, MESSAGES, return_state=True)
            spent = time.perf_counter() - started
            outcomes.append((state.result(raise_on_failure=False), spent, sim.stats().requests))
        return outcomes

    started = time.perf_counter()
    outcomes = night()
    elapsed = time.perf_counter() - started
    errors = [error for error, _, _ in outcomes]
    # The first call spends its attempts (and task retries) on the probes, then the outage
    # is older than the patience: every later call fails at once.
    assert isinstance(errors[0], openai.InternalServerError | CircuitOpenError)
    assert all(isinstance(e, CircuitOpenError) for e in errors[1:]), errors
    assert "past the outage patience of 1.5 s" in "".join(errors[-1].__notes__)
    assert outcomes[0][1] >= 0.6  # the first call waited for probes, within the patience
    # Then every call fails at once: each ended in the branch that never waits (past the
    # patience), sending at most the one probe that was due when it came.
    assert all("past the outage patience" in "".join(e.__notes__) for e in errors[2:]), errors
    sent = [requests for _, _, requests in outcomes]
    assert all(after - before <= 1 for before, after in itertools.pairwise(sent[1:])), sent
    assert elapsed < 30.0  # with the old 30 s task retries: minutes
    assert sim.stats().requests < 20  # and the dead server was spared


def test_a_probe_that_succeeds_ends_the_fail_fast(sim: Simulator) -> None:
    sim.configure(outages=[OutageWindow(start_s=0.0, end_s=2.5)])
    runner = RUNNERS.build(outage_model(sim, outage_patience_s=0.5))

    async def calls() -> list[Any]:
        """Calls every 0.15 s until one succeeds after a fail-fast one (or 30 s passed)."""
        outcomes: list[Any] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                outcomes.append(await runner.complete(MESSAGES))
                if any(map(failed_fast, outcomes)):
                    break
            except (CircuitOpenError, openai.InternalServerError) as exc:
                outcomes.append(exc)
            await asyncio.sleep(0.15)
        return outcomes

    outcomes = asyncio.run(calls())
    first_fast = next(n for n, outcome in enumerate(outcomes) if failed_fast(outcome))
    # past the patience, during the outage: fail fast; a probe after the outage closed it
    assert all(isinstance(o, BaseException) for o in outcomes[:first_fast]), outcomes
    assert not isinstance(outcomes[-1], BaseException), outcomes


def failed_fast(outcome: Any) -> bool:
    """Whether `outcome` is the error of a call that failed at once, past the patience."""
    notes = "".join(getattr(outcome, "__notes__", []))
    return isinstance(outcome, CircuitOpenError) and "past the outage patience" in notes
