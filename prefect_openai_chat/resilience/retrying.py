"""The in-call retry tier: run one logical call, retrying what the policy says, within bounds.

`call_with_retries` runs `attempt(n)` for n = 1, 2, ... until it returns, or the
policy says fail, or `policy.max_attempts` failed attempts were made. Around every
attempt it asks the circuit guard for a permit and reports the outcome, waits for
the rate limiter, and holds a slot of the adaptive concurrency gate while the HTTP
attempt is in flight (not while waiting). Before every retry it takes one retry from
the budget and waits what the policy's wait strategy says (the server's
Retry-After, else full-jitter backoff).

An open circuit is waited out, not failed: a call that meets it waits for the shared
half-open probe, for at most the policy's `outage_patience_s` counted from when this
process first saw the circuit open; a short blip is ridden out. Past the patience
every call fails at once with `CircuitOpenError` (and no task retries) until a probe
succeeds, so a long outage ends the run in minutes, not in hours of retries.

A 429 `rate_limit_exceeded` is pacing, not failure: it pauses the shared limiter
for every caller, lowers the concurrency gate, and is retried after the server's
Retry-After without counting against `max_attempts` or the retry budget. What
bounds it is the policy's `rate_limit_patience_s`, a wall-clock time counted from
the call's first 429: a wait that would end past it fails the call at once with
`RateLimitPatienceError`, which says how long it waited and what the headers said.

Why a small loop rather than tenacity's `AsyncRetrying`: the decisions here are not
a pure function of the outcome (a 401 reloads credentials once, a budget or a guard
may refuse, a 429 quota error is translated), and each attempt must hold a circuit
permit. A loop that calls tenacity's own wait strategies keeps all of that in one
readable place and still composes with tenacity's waits.

What the caller gets when it fails:

* retries exhausted (or the budget refused a retry): the **last original exception**,
  unchanged in class (e.g. `openai.InternalServerError`), with a note saying how many
  attempts were made; the task tier's `retry_condition_fn` classifies it again;
* 429 `insufficient_quota`: `InsufficientQuotaError`, chained from the original;
* 429 `rate_limit_exceeded` past the patience: `RateLimitPatienceError`, chained;
* 401 twice (or no reload possible): `CredentialsRejectedError` (the key is never shown);
* circuit open past the outage patience: `CircuitOpenError` (chained from the last
  attempt's error, if any);
* context overflow and client errors: the original exception, at once.

Example:
    >>> import asyncio
    >>> from prefect_openai_chat.resilience import RetryPolicy, call_with_retries
    >>> async def attempt(n: int) -> str:
    ...     if n < 2:
    ...         raise TimeoutError("stalled")
    ...     return "ok"
    >>> async def no_wait(seconds: float) -> None: ...
    >>> asyncio.run(call_with_retries(attempt, policy=RetryPolicy(), key="k", sleep=no_wait))
    ('ok', 2)
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, NoReturn, TypeVar

from tenacity import RetryCallState

from prefect_openai_chat.errors import (
    CircuitOpenError,
    CredentialsRejectedError,
    InsufficientQuotaError,
    RateLimitPatienceError,
    add_note,
)
from prefect_openai_chat.resilience.budget import RetryBudget
from prefect_openai_chat.resilience.circuit import CircuitGuard, Permit
from prefect_openai_chat.resilience.classify import TOO_MANY_REQUESTS, Action, Verdict
from prefect_openai_chat.resilience.concurrency import AdaptiveConcurrency
from prefect_openai_chat.resilience.limit_headers import read_limits
from prefect_openai_chat.resilience.limiter import Limiter
from prefect_openai_chat.resilience.policy import RetryPolicy
from prefect_openai_chat.resilience.waits import headers_of, retry_after_of
from prefect_openai_chat.telemetry import note_wait

T = TypeVar("T")

QUOTA_HELP = (
    "the OpenAI account is out of quota (429 insufficient_quota); add credits or raise the"
    " limit at https://platform.openai.com/settings/organization/billing — retrying cannot help"
)


@dataclass(frozen=True)
class RetryEvent:
    """One in-call retry is about to happen.

    Attributes:
        key: The circuit key of the call.
        attempt: The attempt that failed (1 for the first).
        delay_s: Seconds slept before the next attempt.
        error: The error of the failed attempt.
        verdict: Why it is retried.
    """

    key: str
    attempt: int
    delay_s: float
    error: BaseException
    verdict: Verdict


# A 429 without Retry-After waits at least half of this, even with `backoff_base_s=0`:
# retrying at once only asks an empty bucket again (thousands of requests a minute).
MIN_RATE_LIMIT_WINDOW_S = 0.5


class _Pacing:
    """The 429s of one call: how long it has waited, against the policy's patience."""

    def __init__(self, policy: RetryPolicy, key: str, clock: Callable[[], float]) -> None:
        self.policy, self.key, self.clock = policy, key, clock
        self.first: float | None = None
        self.count = 0

    def pause_for(self, exc: BaseException, limiter: Any) -> float:
        """The pause after this 429, or `RateLimitPatienceError` when it ends past the patience."""
        now = self.clock()
        if self.first is None:
            self.first = now
        self.count += 1
        asked = retry_after_of(exc)
        if asked is None:  # no Retry-After: back off with full jitter
            base = max(self.policy.backoff_base, MIN_RATE_LIMIT_WINDOW_S)  # a bucket must refill
            window = base * 2 ** min(self.count - 1, 6)
            asked = random.uniform(0.5, 1.0) * min(window, max(self.policy.backoff_cap, 1.0))
        waited = now - self.first
        patience = self.policy.rate_limit_patience_s
        if waited + asked > patience:
            raise RateLimitPatienceError(
                f"{self.key!r} still answered 429 rate_limit_exceeded after {waited:.1f} s of"
                f" waiting over {self.count} answer(s); the server now asks for {asked:.1f} s more,"
                f" past the rate-limit patience of {patience:g} s. It said: {_said(exc)}."
                f" Limits in force: {limiter.describe() if limiter else 'none'}. Raise"
                " rate_limit_patience_s on the ChatModel, lower the concurrency, share one limiter"
                " between workers (redis_url), or ask OpenAI for a higher limit",
                waited_s=waited,
                answers=self.count,
            ) from exc
        return asked


class _Outages:
    """When this process first saw each circuit open; forgotten when a call succeeds."""

    def __init__(self) -> None:
        self._since: dict[str, float] = {}
        self._lock = threading.Lock()

    def seen_open(self, key: str, opened_at: float) -> float:
        """The start of the outage on `key`: the first opening this process saw."""
        with self._lock:
            return self._since.setdefault(key, opened_at)

    def ended(self, key: str) -> None:
        """A call on `key` succeeded: the outage is over."""
        if key in self._since:
            with self._lock:
                self._since.pop(key, None)

    def clear(self) -> None:
        """Forget every outage (for tests)."""
        with self._lock:
            self._since.clear()


outages = _Outages()
POLL_OPEN_S = 1.0  # while a probe is in flight, how often the others look again


def _bucket_empty(exc: BaseException) -> bool:
    """Whether a 429 says a bucket is empty (or says nothing): a reason to send fewer at once.

    A 429 whose headers show requests and tokens left is a passing fault of the server
    (a proxy, a busy shard), not too many calls in flight.
    """
    readings = read_limits(headers_of(exc))
    return not readings or any(reading.remaining < 1 for reading in readings.values())


def _said(exc: BaseException) -> str:
    """The rate-limit headers of a 429, in short."""
    headers = headers_of(exc)
    if headers is None:
        return "no headers"
    shown = [
        f"{name}={headers.get(name)}"
        for name in ("retry-after", "retry-after-ms")
        if headers.get(name) is not None
    ]
    for kind, reading in read_limits(headers).items():
        reset = "?" if reading.reset_s is None else f"{reading.reset_s:g}s"
        shown.append(f"{kind} {reading.remaining:g}/{reading.limit:g} left, full in {reset}")
    return "; ".join(shown) or "no rate-limit headers"


class _Loop:
    """The state of one call's attempts, and what happens after a failed one."""

    def __init__(
        self,
        policy: RetryPolicy,
        key: str,
        guard: CircuitGuard | None,
        budget: RetryBudget | None,
        limiter: Limiter | None,
        on_retry: Callable[[RetryEvent], None] | None,
        clock: Callable[[], float] = time.monotonic,
        outage_patience_s: float | None = None,
        on_429: Callable[[], None] | None = None,
    ) -> None:
        self.policy, self.key, self.guard, self.budget = policy, key, guard, budget
        self.on_429 = on_429
        self.outage_patience_s = (
            policy.outage_patience_s if outage_patience_s is None else outage_patience_s
        )
        self.limiter, self.on_retry = limiter, on_retry
        self.state: RetryCallState | None = None  # made on the first failure only
        self.reloaded = False
        self.last_error: BaseException | None = None
        self.pacing = _Pacing(policy, key, clock)
        self.failed = 0  # failed attempts that count against max_attempts (429s do not)
        self.sent = 0  # HTTP attempts made
        self.pause = 0.0  # the last 429 pause

    async def permit_within_patience(
        self, sleep: Callable[[float], Awaitable[Any]]
    ) -> Permit | None:
        """A permit; while the circuit is open, wait for its probe within the outage patience."""
        while True:
            try:
                return await self.permit()
            except CircuitOpenError as exc:
                await sleep(self.wait_for_probe(exc))

    def wait_for_probe(self, exc: CircuitOpenError) -> float:
        """Seconds to wait for the next probe, or raise `exc` when past the outage patience."""
        assert self.guard is not None  # only a guard raises CircuitOpenError
        now = self.guard.now()
        since = outages.seen_open(self.key, min(now, exc.retry_at - self.guard.reset_timeout_s))
        left = since + self.outage_patience_s - now
        if left <= 0:
            add_note(
                exc,
                f"the circuit has been open for {now - since:.0f} s, past the outage patience of"
                f" {self.outage_patience_s:g} s: calls fail at once until a probe succeeds",
            )
            exc.patience_exhausted = True  # type: ignore[attr-defined]
            raise exc
        return min(max(exc.retry_at - now, 0.05), POLL_OPEN_S, left)

    async def on_guard(self, method: Callable[..., T], *args: Any) -> T:
        """`method(*args)` of the circuit guard: in a worker thread when the guard shares its
        state through Redis (its calls block on the network), else here and now."""
        if self.guard is not None and self.guard.shared:
            return await asyncio.to_thread(method, *args)
        return method(*args)

    async def permit(self) -> Permit | None:
        permit = None
        if self.guard is not None:
            try:
                permit = await self.on_guard(self.guard.before_call)
            except CircuitOpenError as exc:
                if self.last_error is not None:
                    raise exc from self.last_error
                raise
        if self.budget is not None and self.sent == 0:
            self.budget.record_request()  # only calls that are actually sent earn retries
        self.sent += 1
        return permit

    async def success(self, permit: Permit | None) -> None:
        if self.guard is not None and permit is not None:
            await self.on_guard(self.guard.record_success, permit)
            outages.ended(self.key)

    async def failure(self, permit: Permit | None, exc: BaseException) -> Verdict:
        """Record the failed attempt; return its verdict (raise when there is nothing to retry)."""
        verdict = self.policy.classify(exc) if isinstance(exc, Exception) else None
        if verdict is None:  # cancelled, KeyboardInterrupt: not ours to handle
            if self.guard is not None and permit is not None:
                self.guard.record_ignored(permit)  # no await while cancelled (Redis: probes only)
            raise exc
        if self.on_429 is not None and verdict.reason in TOO_MANY_REQUESTS:
            self.on_429()  # counted before anything may raise: the answer was met
        if self.guard is not None and permit is not None:
            if verdict.outage:
                await self.on_guard(self.guard.record_failure, permit, exc)
            else:
                await self.on_guard(self.guard.record_ignored, permit)
        self.last_error = exc
        if self.limiter is not None:  # an answer without headers ends the first-call probe too
            self.limiter.observe(headers_of(exc) or {})
        if verdict.rate_limited:
            pause = self.pacing.pause_for(exc, self.limiter)
            if self.limiter is not None:
                self.limiter.throttle(pause)  # every caller waits, this one too
            self.pause = pause
            return verdict
        if permit is not None and permit.probe and verdict.outage and self.outage_patience_s:
            self.pause = 0.0  # a failed probe is part of waiting out the outage, not an attempt
            return replace(verdict, rate_limited=False, reason="probe_failed")
        self.failed += 1
        if verdict.action is Action.RETRY:
            self._check_can_retry(exc)
        elif verdict.action is Action.RELOAD_CREDENTIALS:
            if self.reloaded or self.failed >= self.policy.max_attempts:
                self._reject_credentials(exc)
        elif verdict.reason == "insufficient_quota":
            raise InsufficientQuotaError(QUOTA_HELP) from exc
        else:
            raise exc
        return verdict

    def _check_can_retry(self, exc: BaseException) -> None:
        n = self.failed
        if n >= self.policy.max_attempts:
            add_note(
                exc,
                f"gave up after {n} attempt(s) on {self.key!r}"
                f" (max_attempts={self.policy.max_attempts})",
            )
            raise exc
        if self.budget is not None and not self.budget.try_acquire_retry():
            add_note(exc, f"not retried: the retry budget of {self.key!r} is spent (attempt {n})")
            raise exc

    def _reject_credentials(self, exc: BaseException) -> NoReturn:
        request_id = getattr(exc, "request_id", None)
        detail = " after reloading the credentials" if self.reloaded else ""
        raise CredentialsRejectedError(
            f"the credentials for {self.key!r} were rejected (401){detail}; save a valid key in"
            " the credentials block or environment, or, with Microsoft Entra ID, give the"
            " identity a role such as Cognitive Services OpenAI User on the resource"
            f" (request id: {request_id or 'n/a'})"
        ) from None

    def delay(self, exc: BaseException, verdict: Verdict) -> float:
        """Seconds to sleep before the next attempt (0 for a 429: the limiter holds the pause)."""
        if verdict.reason == "probe_failed":
            seconds = 0.0  # the next permit waits for the next probe
        elif verdict.rate_limited:
            seconds = 0.0 if self.limiter is not None else self.pause
        else:
            if self.state is None:
                self.wait = self.policy.wait()
                self.state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
            self.state.attempt_number = self.failed
            self.state.set_exception((type(exc), exc, exc.__traceback__))
            seconds = max(0.0, float(self.wait(self.state)))
        if self.on_retry is not None:
            self.on_retry(RetryEvent(self.key, self.sent, seconds, exc, verdict))
        return seconds


async def call_with_retries(
    attempt: Callable[[int], Awaitable[T]],
    *,
    policy: RetryPolicy,
    key: str,
    guard: CircuitGuard | None = None,
    budget: RetryBudget | None = None,
    limiter: Limiter | None = None,
    gate: AdaptiveConcurrency | None = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    on_retry: Callable[[RetryEvent], None] | None = None,
    reload_credentials: Callable[[], Awaitable[bool]] | None = None,
    tokens: int | Callable[[], int] = 0,
    clock: Callable[[], float] = time.monotonic,
    outage_patience_s: float | None = None,
    on_429: Callable[[], None] | None = None,
) -> tuple[T, int]:
    """Run `attempt(n)` under the in-call tier; return (result, HTTP attempts made).

    Args:
        attempt: Makes HTTP attempt number `n` (1-based), e.g. one `create(...)` call.
        policy: The retry policy.
        key: The circuit key, used in messages and events.
        guard: The circuit guard of the key, if any.
        budget: The retry budget of the key, if any.
        limiter: A client-side rate limiter, if any (acquired before every attempt).
        gate: The adaptive concurrency gate, if any (held during each HTTP attempt).
        sleep: The async sleep between attempts (inject a recording one in tests).
        on_retry: Called before each retry's sleep.
        reload_credentials: Called once on a 401; return True if the key changed.
        tokens: Tokens of one attempt (prompt plus completion room), for the token bucket;
            a function is called only once a token limit is known (counting costs time).
        clock: The monotonic clock of the rate-limit patience.
        outage_patience_s: Overrides the policy's (0: fail at once on an open circuit, for a
            caller with a fallback to turn to).
        on_429: Called once for each attempt the classification files under an HTTP 429
            row (`TOO_MANY_REQUESTS`: rate limit or quota), retried or not.
    """
    loop = _Loop(policy, key, guard, budget, limiter, on_retry, clock, outage_patience_s, on_429)
    while True:
        waiting = time.perf_counter()
        permit = await loop.permit_within_patience(sleep)
        note_wait("circuit", time.perf_counter() - waiting)
        try:
            # The concurrency slot first, then the rate-limit slot: a call that reserved its
            # send time must send then, not queue behind the gate and go out in a burst.
            async with gate.slot() if gate is not None else contextlib.nullcontext():
                if limiter is not None:
                    waiting = time.perf_counter()
                    await limiter.acquire(tokens, sleep=sleep)
                    note_wait("limiter", time.perf_counter() - waiting)
                started = clock()
                result = await attempt(loop.sent)
            if gate is not None:
                gate.record(clock() - started)
        except BaseException as exc:
            verdict = await loop.failure(permit, exc)
            if gate is not None and verdict.rate_limited and _bucket_empty(exc):
                gate.record(None, overloaded=True)
            if verdict.action is Action.RELOAD_CREDENTIALS:
                loop.reloaded = True
                if reload_credentials is None or not await reload_credentials():
                    loop._reject_credentials(exc)
                continue
            seconds = loop.delay(exc, verdict)
            if seconds > 0:
                await sleep(seconds)
            continue
        await loop.success(permit)
        return result, loop.sent
