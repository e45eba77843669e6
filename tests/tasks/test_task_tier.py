"""The error table and the task tier, through the real tasks inside real Prefect flows.

Every row of the README's error table is driven through `chat_completion` (or its stream
twin) against the simulator over real HTTP, with the real `openai` client: the attempts
the server saw, the task runs Prefect made, and the exception the caller gets. Then the
task tier on its own: an open circuit re-runs the task, a 400 never does, the number of
runs follows the block's `task_retries`, and the HTTP attempts of one logical call never
exceed `max_attempts * (task_retries + 1)`. Task retries are configured with
`retry_delay_seconds=0`; the in-call backoff is zero, so nothing here waits for long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import openai
import pytest
from prefect import flow, task
from resilience_support import (
    MESSAGES,
    StatusServer,
    clear_resilience,
    counted,
    fast_model,
    sim_model,
    task_run_count,
)
from timing_support import FakeClock, RecordingSleep

from prefect_openai_chat import (
    ChatModel,
    ChatResult,
    achat_completion,
    astream_chat_completion,
    chat_completion,
    stream_chat_completion,
)
from prefect_openai_chat.blocks.assembly import RUNNERS
from prefect_openai_chat.chat import ChatRunner
from prefect_openai_chat.errors import (
    CircuitOpenError,
    CredentialsRejectedError,
    IncompleteStreamError,
    InsufficientQuotaError,
    RateLimitPatienceError,
)
from prefect_openai_chat.resilience import circuit_key
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.tasks._common import TASK_RETRY_CEILING

SYNC_CHAT = counted(chat_completion)
SYNC_STREAM = counted(stream_chat_completion)
ASYNC_CHAT = counted(achat_completion)
ASYNC_STREAM = counted(astream_chat_completion)

# Every row runs with max_attempts=2 and task_retries=1: a row the policy retries in both
# tiers shows 2 task runs x 2 attempts = 4 requests; a row it never retries shows 1 and 1.
ATTEMPTS, TASK_RETRIES = 2, 1
BOTH_TIERS = ATTEMPTS * (TASK_RETRIES + 1)


@dataclass(frozen=True)
class Row:
    """One row of the error table: how to provoke it and what must come out."""

    id: str
    fault: str | None
    error: type[BaseException]
    requests: int
    runs: int
    stream: bool = False
    params: tuple[tuple[str, Any], ...] = ()
    model: tuple[tuple[str, Any], ...] = ()


ROWS = [
    # 429s are pacing: not bounded by max_attempts, but by the patience. Each 429 asks for
    # 1 s; answers come at 0, 1 + d and 2 + d + d' s, and the third's 1 s more ends past
    # 2.9 s whatever the round trips d, d'. The second retry is sent whenever d <= 0.9 s
    # (with 2.5 s a busy CI machine, d > 0.5 s, once saw only two requests).
    Row("429-rate-limit", "429", RateLimitPatienceError, 3, 1,
        model=(("rate_limit_patience_s", 2.9),)),
    Row("429-insufficient-quota", "quota", InsufficientQuotaError, 1, 1),
    Row("500", "500", openai.InternalServerError, BOTH_TIERS, 2),
    Row("502", "502", openai.InternalServerError, BOTH_TIERS, 2),
    Row("502-html", "502-html", openai.InternalServerError, BOTH_TIERS, 2),
    Row("503", "503", openai.InternalServerError, BOTH_TIERS, 2),
    Row("408", "408", openai.APIStatusError, BOTH_TIERS, 2),
    Row("409", "409", openai.ConflictError, BOTH_TIERS, 2),
    Row("connection-reset", "reset", openai.APIConnectionError, BOTH_TIERS, 2),
    Row("hang-read-timeout", "hang", openai.APITimeoutError, BOTH_TIERS, 2,
        model=(("read_timeout_s", 0.25),)),
    Row("stream-stall", "stall", openai.APITimeoutError, BOTH_TIERS, 2, stream=True,
        model=(("read_timeout_s", 0.25),)),
    Row("stream-cut", "cut", IncompleteStreamError, BOTH_TIERS, 2, stream=True),
    Row("stream-error-event", "stream-error", openai.APIError, BOTH_TIERS, 2, stream=True),
    Row("400", None, openai.BadRequestError, 1, 1, params=(("temperature", 7.0),)),
    Row("404", None, openai.NotFoundError, 1, 1, params=(("model", "no-such-model"),)),
    Row("401", None, CredentialsRejectedError, 1, 1, model=(("api_key", "sk-wrong-key-0042"),)),
]  # fmt: skip


@dataclass
class Outcome:
    error: BaseException | None
    requests: int
    task_run_id: UUID
    runs: int = 0


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=4, stall_s=5.0, hang_s=5.0) as simulator:
        yield simulator


def _reset(sim: Simulator) -> Simulator:
    """The module's simulator as every test starts from it (tests change its settings)."""
    sim.reset()
    sim.configure(fault_rates={}, script=[], retry_after_s=1.0)
    clear_resilience()
    return sim


@pytest.fixture
def fresh(sim: Simulator) -> Simulator:
    return _reset(sim)


def _row_model(sim: Simulator, row: Row) -> ChatModel:
    fields: dict[str, Any] = {"max_attempts": ATTEMPTS, "task_retries": TASK_RETRIES}
    fields.update(dict(row.model))
    api_key = fields.pop("api_key", sim.api_key)
    return fast_model(sim.base_url, api_key, **fields)


@pytest.fixture(scope="module")
def row_outcomes(prefect_harness: None, sim: Simulator) -> dict[str, Outcome]:
    """Run every row once, in one flow (a flow costs about a second of orchestration)."""

    @flow
    def error_table() -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        for row in ROWS:
            _reset(sim)  # whatever the tests run before this one configured
            params: dict[str, Any] = dict(row.params)
            if row.fault:
                params["extra_headers"] = {"x-simulator-fault": row.fault}
            call = SYNC_STREAM if row.stream else SYNC_CHAT
            state = call(_row_model(sim, row), MESSAGES, **params, return_state=True)
            error = state.result(raise_on_failure=False)
            outcomes[row.id] = Outcome(
                error if isinstance(error, BaseException) else None,
                sim.stats().requests,
                state.state_details.task_run_id,
            )
        return outcomes

    outcomes = error_table()
    for outcome in outcomes.values():
        outcome.runs = task_run_count(outcome.task_run_id)
    return outcomes


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_error_table_row_in_a_flow(row_outcomes: dict[str, Outcome], row: Row) -> None:
    outcome = row_outcomes[row.id]
    assert outcome.error is not None, f"{row.id}: the call succeeded"
    assert isinstance(outcome.error, row.error), f"{row.id}: got {outcome.error!r}"
    assert outcome.requests == row.requests, f"{row.id}: server saw {outcome.requests}"
    assert outcome.runs == row.runs, f"{row.id}: Prefect ran the task {outcome.runs} times"


def test_quota_error_says_the_account_is_out_of_quota(row_outcomes: dict[str, Outcome]) -> None:
    error = row_outcomes["429-insufficient-quota"].error
    assert "quota" in str(error) and "retrying cannot help" in str(error)
    assert isinstance(error.__cause__, openai.RateLimitError)


def test_rejected_key_is_not_shown(row_outcomes: dict[str, Outcome]) -> None:
    text = str(row_outcomes["401"].error)
    assert "401" in text and "rejected" in text
    assert "sk-wrong" not in text and "0042" not in text


@pytest.mark.parametrize("status", [403, 422])
def test_403_and_422_fail_at_once_without_task_retry(status: int) -> None:
    server = StatusServer(status)
    with server.running():
        model = fast_model(server.base_url, "sk-any", max_attempts=4, task_retries=3)

        @flow
        def forbidden() -> tuple[Any, UUID]:
            state = SYNC_CHAT(model, MESSAGES, return_state=True)
            return state.result(raise_on_failure=False), state.state_details.task_run_id

        error, task_run_id = forbidden()
    assert isinstance(error, openai.APIStatusError) and error.status_code == status
    assert server.requests == 1
    assert task_run_count(task_run_id) == 1


async def _sleeps_through_429s(sim: Simulator, model: ChatModel) -> RecordingSleep:
    """Send one call that always gets a 429 through a runner whose sleep is recorded."""
    settings = model.chat_settings()
    clock = FakeClock()
    sleep = RecordingSleep(clock)
    client = openai.AsyncOpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)
    runner = ChatRunner(
        settings,
        lambda: client,
        protection=RUNNERS.protection(model, circuit_key(settings.base_url, settings.model)),
        sleep=sleep,
        clock=clock,
    )
    with pytest.raises(RateLimitPatienceError):
        await runner.complete(MESSAGES, extra_headers={"x-simulator-fault": "429"})
    await client.close()
    return sleep


async def test_rate_limit_waits_what_the_server_asks(fresh: Simulator) -> None:
    """429 rate_limit_exceeded: every caller sleeps the retry-after, within the patience."""
    fresh.configure(retry_after_s=2.5)
    model = sim_model(fresh, max_attempts=2, rate_limit_patience_s=6.0)
    sleep = await _sleeps_through_429s(fresh, model)
    assert sleep.delays == pytest.approx([2.5, 2.5], abs=0.01)  # 429s: pacing, not attempts
    assert fresh.stats().by_status == {429: 3}


async def test_rate_limit_wait_past_the_patience_fails_at_once(fresh: Simulator) -> None:
    fresh.configure(retry_after_s=600.0)
    model = sim_model(fresh, max_attempts=2, rate_limit_patience_s=300.0)
    sleep = await _sleeps_through_429s(fresh, model)
    assert sleep.delays == [] and fresh.stats().by_status == {429: 1}


def test_transient_errors_then_success_in_one_task_run(fresh: Simulator) -> None:
    fresh.configure(script=["503", "reset", "429", "ok"])
    model = sim_model(fresh, max_attempts=4, task_retries=0)

    @flow
    def recovers() -> ChatResult:
        return SYNC_CHAT(model, MESSAGES)

    result = recovers()
    assert result.http_attempts == 4 and result.content
    assert fresh.stats().requests == 4


# --- the task tier ------------------------------------------------------------------------


def _run(model: ChatModel, use_async: bool, stream: bool = False, **params: Any) -> Outcome:
    """One logical call in a flow (sync or async task); its error, requests and runs."""
    sim_requests = params.pop("_sim")
    if use_async:
        call = ASYNC_STREAM if stream else ASYNC_CHAT

        @flow
        async def async_flow() -> tuple[Any, UUID]:
            state = await call(model, MESSAGES, **params, return_state=True)
            return await state.result(raise_on_failure=False), state.state_details.task_run_id

        error, task_run_id = asyncio.run(async_flow())
    else:
        sync_call = SYNC_STREAM if stream else SYNC_CHAT

        @flow
        def sync_flow() -> tuple[Any, UUID]:
            state = sync_call(model, MESSAGES, **params, return_state=True)
            return state.result(raise_on_failure=False), state.state_details.task_run_id

        error, task_run_id = sync_flow()
    outcome = Outcome(error, sim_requests.stats().requests, task_run_id)
    outcome.runs = task_run_count(task_run_id)
    return outcome


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_open_circuit_past_the_patience_is_not_rerun(fresh: Simulator, use_async: bool) -> None:
    # The circuit opens on the 2nd outage error, and the 503 earns a task re-run; the re-run
    # meets the open circuit past the outage patience (0 here): it fails at once and Prefect
    # does not run it a third time, although task_retries=2 would allow it.
    model = sim_model(fresh, max_attempts=2, task_retries=2, circuit_failures=2)
    outcome = _run(model, use_async, _sim=fresh, extra_headers={"x-simulator-fault": "503"})
    assert isinstance(outcome.error, CircuitOpenError)
    assert outcome.runs == 2
    assert fresh.stats().requests == 2


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_400_is_never_rerun(fresh: Simulator, use_async: bool) -> None:
    model = sim_model(fresh, max_attempts=4, task_retries=5)
    outcome = _run(model, use_async, _sim=fresh, temperature=7.0)
    assert isinstance(outcome.error, openai.BadRequestError)
    assert outcome.runs == 1 and outcome.requests == 1


BOUNDS = [
    # max_attempts, task_retries, async task, stream
    (2, 0, False, False),
    (3, 2, False, False),
    (1, 4, False, False),
    (2, 2, True, False),
    (2, 1, True, True),
]


@pytest.mark.parametrize(
    ("max_attempts", "task_retries", "use_async", "stream"),
    BOUNDS,
    ids=[f"{a}x{r + 1}-{'async' if s else 'sync'}{'-stream' * t}" for a, r, s, t in BOUNDS],
)
def test_total_attempts_reach_the_policy_bound_against_a_dead_server(
    fresh: Simulator, max_attempts: int, task_retries: int, use_async: bool, stream: bool
) -> None:
    fresh.configure(fault_rates={"stream-error" if stream else "503": 1.0})
    model = sim_model(fresh, max_attempts=max_attempts, task_retries=task_retries)
    outcome = _run(model, use_async, stream, _sim=fresh)
    policy = model.retry_policy()
    assert outcome.error is not None
    assert outcome.runs == task_retries + 1
    assert outcome.requests == policy.max_total_attempts == max_attempts * (task_retries + 1)


def test_task_retries_above_the_ceiling_are_refused_by_the_block(fresh: Simulator) -> None:
    with pytest.raises(ValueError, match="task_retries"):
        sim_model(fresh, max_attempts=1, task_retries=TASK_RETRY_CEILING + 1)
    fresh.configure(fault_rates={"503": 1.0})
    model = sim_model(fresh, max_attempts=1, task_retries=TASK_RETRY_CEILING)
    outcome = _run(model, False, _sim=fresh)
    assert outcome.runs == TASK_RETRY_CEILING + 1
    assert outcome.requests == TASK_RETRY_CEILING + 1 == model.retry_policy().max_total_attempts


def test_default_budget_does_not_cut_a_single_call_short(fresh: Simulator) -> None:
    fresh.configure(fault_rates={"503": 1.0})
    model = sim_model(fresh, max_attempts=4, task_retries=2, retry_budget_ratio=0.2)
    outcome = _run(model, True, _sim=fresh)
    assert isinstance(outcome.error, openai.InternalServerError)
    assert outcome.requests == model.retry_policy().max_total_attempts == 12


# --- the retry budget ---------------------------------------------------------------------


def test_retry_budget_caps_retries_of_a_concurrent_batch(fresh: Simulator) -> None:
    """40 concurrent calls against a dead server: retries stay within ratio*requests + floor."""
    fresh.configure(fault_rates={"503": 1.0})
    calls, ratio, floor = 40, 0.2, 10
    model = sim_model(fresh, max_attempts=4, task_retries=0, retry_budget_ratio=ratio)

    @task(retries=0)
    async def batch() -> list[BaseException | ChatResult]:
        runner = RUNNERS.build(model)
        return await asyncio.gather(
            *(runner.complete(MESSAGES) for _ in range(calls)), return_exceptions=True
        )

    @flow
    async def nightly() -> list[BaseException | ChatResult]:
        return await batch()

    results = asyncio.run(nightly())
    assert all(isinstance(r, openai.InternalServerError) for r in results)
    retries = fresh.stats().requests - calls
    assert floor <= retries <= ratio * calls + floor
    assert (
        fresh.stats().requests < calls * model.retries.max_attempts
    )  # what it would be unbudgeted
