"""The in-call retry tier: run one logical call, retrying what the policy says, within bounds.

`call_with_retries` runs `attempt(n)` for n = 1, 2, ... until it returns, or the
policy says fail, or `policy.max_attempts` attempts were made. Around every attempt
it asks the circuit guard for a permit and reports the outcome; before every retry
it takes one retry from the budget and waits what the policy's wait strategy says
(the server's Retry-After, else full-jitter backoff); a 429 rate limit also pauses
the shared limiter for every concurrent caller.

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
* 401 twice (or no reload possible): `CredentialsRejectedError` (the key is never shown);
* circuit open: `CircuitOpenError` (chained from the last attempt's error, if any);
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
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from tenacity import RetryCallState

from prefect_openai_chat.errors import (
    CircuitOpenError,
    CredentialsRejectedError,
    InsufficientQuotaError,
    add_note,
)
from prefect_openai_chat.resilience.budget import RetryBudget
from prefect_openai_chat.resilience.circuit import CircuitGuard, Permit
from prefect_openai_chat.resilience.classify import Action, Verdict
from prefect_openai_chat.resilience.limiter import RateLimiter
from prefect_openai_chat.resilience.policy import RetryPolicy
from prefect_openai_chat.resilience.waits import retry_after_of

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


class _Loop:
    """What happens after a failed attempt: shared by the async and the sync runner."""

    def __init__(
        self,
        policy: RetryPolicy,
        key: str,
        guard: CircuitGuard | None,
        budget: RetryBudget | None,
        limiter: RateLimiter | None,
        on_retry: Callable[[RetryEvent], None] | None,
    ) -> None:
        self.policy, self.key, self.guard, self.budget = policy, key, guard, budget
        self.limiter, self.on_retry = limiter, on_retry
        self.state: RetryCallState | None = None  # made on the first failure only
        self.reloaded = False
        self.last_error: BaseException | None = None

    def permit(self, n: int) -> Permit | None:
        permit = None
        if self.guard is not None:
            try:
                permit = self.guard.before_call()
            except CircuitOpenError as exc:
                if self.last_error is not None:
                    raise exc from self.last_error
                raise
        if self.budget is not None and n == 1:
            self.budget.record_request()  # only calls that are actually sent earn retries
        return permit

    def success(self, permit: Permit | None) -> None:
        if self.guard is not None and permit is not None:
            self.guard.record_success(permit)

    def failure(self, n: int, permit: Permit | None, exc: BaseException) -> Verdict:
        """Record the failed attempt; return its verdict (raise when there is nothing to retry)."""
        verdict = self.policy.classify(exc) if isinstance(exc, Exception) else None
        if self.guard is not None and permit is not None:
            if verdict is not None and verdict.outage:
                self.guard.record_failure(permit, exc)
            else:
                self.guard.record_ignored(permit)
        if verdict is None:  # cancelled, KeyboardInterrupt: not ours to handle
            raise exc
        self.last_error = exc
        if verdict.rate_limited and self.limiter is not None:
            pause = retry_after_of(exc) or self.policy.backoff_base
            self.limiter.throttle(min(pause, self.policy.retry_after_cap))
        if verdict.action is Action.RETRY:
            self._check_can_retry(n, exc)
        elif verdict.action is Action.RELOAD_CREDENTIALS:
            if self.reloaded or n >= self.policy.max_attempts:
                self._reject_credentials(exc, n)
        elif verdict.reason == "insufficient_quota":
            raise InsufficientQuotaError(QUOTA_HELP) from exc
        else:
            raise exc
        return verdict

    def _check_can_retry(self, n: int, exc: BaseException) -> None:
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

    def _reject_credentials(self, exc: BaseException, n: int) -> NoReturn:
        request_id = getattr(exc, "request_id", None)
        detail = " after reloading the credentials" if self.reloaded else ""
        raise CredentialsRejectedError(
            f"the API key for {self.key!r} was rejected (401){detail}; save a valid key in the"
            f" credentials block or environment (request id: {request_id or 'n/a'})"
        ) from None

    def delay(self, n: int, exc: BaseException, verdict: Verdict) -> float:
        if self.state is None:
            self.wait = self.policy.wait()
            self.state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        self.state.attempt_number = n
        self.state.set_exception((type(exc), exc, exc.__traceback__))
        seconds = max(0.0, float(self.wait(self.state)))
        if self.on_retry is not None:
            self.on_retry(RetryEvent(self.key, n, seconds, exc, verdict))
        return seconds


async def call_with_retries(
    attempt: Callable[[int], Awaitable[T]],
    *,
    policy: RetryPolicy,
    key: str,
    guard: CircuitGuard | None = None,
    budget: RetryBudget | None = None,
    limiter: RateLimiter | None = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    on_retry: Callable[[RetryEvent], None] | None = None,
    reload_credentials: Callable[[], Awaitable[bool]] | None = None,
    tokens: int = 0,
) -> tuple[T, int]:
    """Run `attempt(n)` under the in-call tier; return (result, attempts used).

    Args:
        attempt: Makes HTTP attempt number `n` (1-based), e.g. one `create(...)` call.
        policy: The retry policy.
        key: The circuit key, used in messages and events.
        guard: The circuit guard of the key, if any.
        budget: The retry budget of the key, if any.
        limiter: A client-side rate limiter, if any (acquired before every attempt).
        sleep: The async sleep between attempts (inject a recording one in tests).
        on_retry: Called before each retry's sleep.
        reload_credentials: Called once on a 401; return True if the key changed.
        tokens: Estimated tokens of one attempt, for the limiter's token bucket.
    """
    loop = _Loop(policy, key, guard, budget, limiter, on_retry)
    n = 0
    waited_out_pause = False  # this caller already slept what a 429 asked for
    while True:
        n += 1
        permit = loop.permit(n)
        try:
            if limiter is not None:
                await limiter.acquire(tokens, sleep=sleep, include_pause=not waited_out_pause)
            result = await attempt(n)
        except BaseException as exc:
            verdict = loop.failure(n, permit, exc)
            if verdict.action is Action.RELOAD_CREDENTIALS:
                loop.reloaded = True
                if reload_credentials is None or not await reload_credentials():
                    loop._reject_credentials(exc, n)
                continue
            await sleep(loop.delay(n, exc, verdict))
            waited_out_pause = verdict.rate_limited
            continue
        loop.success(permit)
        return result, n


def call_with_retries_sync(
    attempt: Callable[[int], T],
    *,
    policy: RetryPolicy,
    key: str,
    guard: CircuitGuard | None = None,
    budget: RetryBudget | None = None,
    sleep: Callable[[float], Any] = time.sleep,
    on_retry: Callable[[RetryEvent], None] | None = None,
    reload_credentials: Callable[[], bool] | None = None,
) -> tuple[T, int]:
    """The sync twin of `call_with_retries` (no limiter: it waits asynchronously).

    Example:
        >>> call_with_retries_sync(lambda n: n * 10, policy=RetryPolicy(), key="k")
        (10, 1)
    """
    loop = _Loop(policy, key, guard, budget, None, on_retry)
    n = 0
    while True:
        n += 1
        permit = loop.permit(n)
        try:
            result = attempt(n)
        except BaseException as exc:
            verdict = loop.failure(n, permit, exc)
            if verdict.action is Action.RELOAD_CREDENTIALS:
                loop.reloaded = True
                if reload_credentials is None or not reload_credentials():
                    loop._reject_credentials(exc, n)
                continue
            sleep(loop.delay(n, exc, verdict))
            continue
        loop.success(permit)
        return result, n
