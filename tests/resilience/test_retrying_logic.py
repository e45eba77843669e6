"""The in-call tier's decisions, with attempts that raise the real openai exception types.

The same rows are driven over real HTTP against the simulator in test_retrying_sim.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import openai
import pytest
from resilience_helpers import FakeClock, RecordingSleep, api_error, connection_error, status_error

from prefect_openai_chat.errors import (
    CircuitOpenError,
    CredentialsRejectedError,
    InsufficientQuotaError,
)
from prefect_openai_chat.resilience import (
    AdaptiveConcurrency,
    CircuitGuard,
    RateLimiter,
    RetryBudget,
    RetryEvent,
    RetryPolicy,
    call_with_retries,
)

# outage_patience_s=0: an open circuit fails at once (waiting is tested on its own)
POLICY = RetryPolicy(max_attempts=4, backoff_base=0.5, backoff_cap=20.0, outage_patience_s=0.0)


def failing(*errors: BaseException, then: str = "ok") -> tuple[Callable[[int], object], list[int]]:
    seen: list[int] = []

    async def attempt(n: int) -> str:
        seen.append(n)
        if n <= len(errors):
            raise errors[n - 1]
        return then

    return attempt, seen


async def test_transient_errors_are_retried_with_backoff(recording_sleep: RecordingSleep) -> None:
    events: list[RetryEvent] = []
    attempt, seen = failing(connection_error(), status_error(503, api_error(None)))
    result = await call_with_retries(
        attempt, policy=POLICY, key="k", sleep=recording_sleep, on_retry=events.append
    )
    assert result == ("ok", 3) and seen == [1, 2, 3]
    assert len(recording_sleep.delays) == 2
    assert 0 <= recording_sleep.delays[0] <= 0.5 and 0 <= recording_sleep.delays[1] <= 1.0
    assert [(e.attempt, e.verdict.reason) for e in events] == [(1, "connection"), (2, "5xx")]
    assert [e.delay_s for e in events] == recording_sleep.delays


async def test_exhaustion_raises_the_last_original_error(recording_sleep: RecordingSleep) -> None:
    attempt, seen = failing(*[status_error(502, api_error(None))] * 10)
    with pytest.raises(openai.InternalServerError) as info:
        await call_with_retries(attempt, policy=POLICY, key="k", sleep=recording_sleep)
    assert seen == [1, 2, 3, 4] and len(recording_sleep.delays) == 3
    assert any("gave up after 4 attempt(s)" in note for note in info.value.__notes__)
    assert POLICY.classify(info.value).task_retry  # the task tier will retry it


async def test_quota_is_never_retried(recording_sleep: RecordingSleep) -> None:
    original = status_error(429, api_error("insufficient_quota", type_="insufficient_quota"))
    attempt, seen = failing(original)
    with pytest.raises(InsufficientQuotaError, match=r"out of quota.*retrying cannot help") as info:
        await call_with_retries(attempt, policy=POLICY, key="k", sleep=recording_sleep)
    assert seen == [1] and recording_sleep.delays == [] and info.value.__cause__ is original


@pytest.mark.parametrize("status", [400, 403, 404, 422])
async def test_client_errors_fail_at_once(status: int, recording_sleep: RecordingSleep) -> None:
    attempt, seen = failing(status_error(status, api_error("x")))
    with pytest.raises(openai.APIStatusError) as info:
        await call_with_retries(attempt, policy=POLICY, key="k", sleep=recording_sleep)
    assert info.value.status_code == status and seen == [1] and recording_sleep.delays == []


async def test_401_reloads_credentials_once(recording_sleep: RecordingSleep) -> None:
    reloads = 0

    async def reload() -> bool:
        nonlocal reloads
        reloads += 1
        return True

    unauthorized = status_error(401, api_error("invalid_api_key", "Incorrect API key: sk-ab***yz"))
    attempt, seen = failing(unauthorized)
    assert await call_with_retries(
        attempt, policy=POLICY, key="k", sleep=recording_sleep, reload_credentials=reload
    ) == ("ok", 2)
    assert reloads == 1 and recording_sleep.delays == []

    attempt, seen = failing(unauthorized, unauthorized)
    with pytest.raises(CredentialsRejectedError, match=r"rejected.*after reloading") as info:
        await call_with_retries(
            attempt, policy=POLICY, key="k", sleep=recording_sleep, reload_credentials=reload
        )
    assert seen == [1, 2] and reloads == 2
    assert "sk-" not in str(info.value) and info.value.__cause__ is None
    assert info.value.__suppress_context__


async def test_401_without_a_changed_key_fails_at_once(recording_sleep: RecordingSleep) -> None:
    async def unchanged() -> bool:
        return False

    attempt, seen = failing(status_error(401, api_error("invalid_api_key")))
    with pytest.raises(CredentialsRejectedError):
        await call_with_retries(
            attempt, policy=POLICY, key="k", sleep=recording_sleep, reload_credentials=unchanged
        )
    assert seen == [1]


async def test_budget_refusal_surfaces_the_error(
    recording_sleep: RecordingSleep, clock: FakeClock
) -> None:
    budget = RetryBudget(ratio=0.0, min_retries_per_window=1, clock=clock)
    attempt, seen = failing(*[status_error(503, api_error(None))] * 10)
    with pytest.raises(openai.InternalServerError) as info:
        await call_with_retries(
            attempt, policy=POLICY, key="k", budget=budget, sleep=recording_sleep
        )
    assert seen == [1, 2]  # one retry from the floor, then the budget is spent
    assert any("retry budget" in note for note in info.value.__notes__)


async def test_guard_counts_outages_only_and_fails_fast_when_open(
    recording_sleep: RecordingSleep, clock: FakeClock, unique_key: str
) -> None:
    guard = CircuitGuard(unique_key, fail_max=3, reset_timeout_s=30.0, clock=clock)
    attempt, _ = failing(status_error(400, api_error("invalid_value")))
    with pytest.raises(openai.BadRequestError):
        await call_with_retries(
            attempt, policy=POLICY, key=unique_key, guard=guard, sleep=recording_sleep
        )
    assert guard.storage.counter == 0
    attempt, seen = failing(*[connection_error()] * 10)
    with pytest.raises(CircuitOpenError) as info:
        await call_with_retries(
            attempt, policy=POLICY, key=unique_key, guard=guard, sleep=recording_sleep
        )
    assert seen == [1, 2, 3]  # the 4th attempt is refused by the open circuit
    assert isinstance(info.value.__cause__, openai.APIConnectionError)
    attempt, seen = failing()
    with pytest.raises(CircuitOpenError):
        await call_with_retries(
            attempt, policy=POLICY, key=unique_key, guard=guard, sleep=recording_sleep
        )
    assert seen == []


async def test_cancelled_probe_releases_its_lease(clock: FakeClock, unique_key: str) -> None:
    guard = CircuitGuard(unique_key, fail_max=1, reset_timeout_s=1.0, clock=clock)
    guard.record_failure(guard.before_call(), connection_error())
    clock.advance(1.0)

    async def hangs(n: int) -> str:
        await asyncio.sleep(10)
        return "never"

    task = asyncio.ensure_future(
        call_with_retries(hangs, policy=POLICY, key=unique_key, guard=guard)
    )
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert guard.before_call().probe  # the next caller may probe


async def test_rate_limit_throttles_every_caller(
    recording_sleep: RecordingSleep, clock: FakeClock
) -> None:
    limiter = RateLimiter(clock=clock, sleep=recording_sleep)
    attempt, _ = failing(status_error(429, api_error("rate_limit_exceeded"), {"retry-after": "3"}))
    assert await call_with_retries(
        attempt, policy=POLICY, key="k", limiter=limiter, sleep=recording_sleep
    ) == ("ok", 2)
    assert limiter.paused_for == pytest.approx(3.0)  # other callers wait too


def _rate_limited(remaining: str) -> BaseException:
    headers = {
        "retry-after-ms": "10",
        "x-ratelimit-limit-requests": "50",
        "x-ratelimit-remaining-requests": remaining,
        "x-ratelimit-reset-requests": "1s",
    }
    return status_error(429, api_error("rate_limit_exceeded"), headers)


@pytest.mark.parametrize(("remaining", "level"), [("0", 8), ("12", 16)])
async def test_only_an_empty_bucket_lowers_the_concurrency(
    recording_sleep: RecordingSleep, remaining: str, level: int
) -> None:
    """A 429 that shows requests left is a passing fault, not too many calls in flight."""
    gate = AdaptiveConcurrency(16)
    attempt, _ = failing(_rate_limited(remaining))
    result = await call_with_retries(
        attempt, policy=POLICY, key="k", gate=gate, sleep=recording_sleep
    )
    assert result == ("ok", 2)
    assert gate.limit == level


async def test_each_429_answer_is_reported_once_and_no_other_error_is(
    recording_sleep: RecordingSleep,
) -> None:
    """`on_429` hears the classification's 429 rows: a rate limit (retried) and a quota."""
    heard: list[int] = []
    attempt, _ = failing(_rate_limited("0"), connection_error(), _rate_limited("0"))
    result = await call_with_retries(
        attempt, policy=POLICY, key="k", sleep=recording_sleep, on_429=lambda: heard.append(1)
    )
    assert result == ("ok", 4) and len(heard) == 2  # the connection error is no 429
    quota, _ = failing(status_error(429, api_error("insufficient_quota")))
    with pytest.raises(InsufficientQuotaError):
        await call_with_retries(quota, policy=POLICY, key="k", on_429=lambda: heard.append(1))
    assert len(heard) == 3  # a 429 that fails the call at once was still met


async def test_a_429_without_retry_after_waits_even_with_no_backoff(
    recording_sleep: RecordingSleep,
) -> None:
    """`backoff_base_s=0` must not turn an empty bucket into thousands of requests."""
    no_backoff = RetryPolicy(max_attempts=4, backoff_base=0.0, backoff_cap=20.0)
    rate_limited = status_error(429, api_error("rate_limit_exceeded"))  # no Retry-After
    attempt, seen = failing(rate_limited, rate_limited, rate_limited)
    assert await call_with_retries(attempt, policy=no_backoff, key="k", sleep=recording_sleep) == (
        "ok",
        4,
    )
    assert len(seen) == 4
    pauses = [d for d in recording_sleep.delays if d > 0]
    assert len(pauses) == 3
    assert min(pauses) >= 0.25  # half of MIN_RATE_LIMIT_WINDOW_S at the least


async def test_a_call_reserves_its_send_time_only_once_it_holds_a_concurrency_slot(
    clock: FakeClock,
) -> None:
    """A reservation held while queueing at the gate would go out in a burst when slots free."""
    gate = AdaptiveConcurrency(1)
    seen_in_flight: list[int] = []

    class WatchingLimiter(RateLimiter):
        async def acquire(
            self, tokens: object = 0, sleep: object = None, probe: bool = True
        ) -> float:
            seen_in_flight.append(gate.in_flight)
            return 0.0

    limiter = WatchingLimiter(clock=clock)

    async def attempt(n: int) -> str:
        await asyncio.sleep(0.01)  # the others queue at the gate meanwhile
        return "ok"

    calls = [
        call_with_retries(attempt, policy=POLICY, key="k", limiter=limiter, gate=gate)
        for _ in range(3)
    ]
    assert await asyncio.gather(*calls) == [("ok", 1)] * 3
    assert seen_in_flight == [1, 1, 1]  # each asked the limiter holding the one slot
