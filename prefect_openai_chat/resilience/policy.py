"""One retry policy for both tiers: in-call retries and Prefect task retries.

`RetryPolicy` holds the settings (built from the `ChatModel` block) and answers
three questions: what to do about an error (`classify`), how long to wait before
the next in-call attempt (`wait`), and how many HTTP attempts one logical call
can make at most across both tiers (`max_total_attempts`).
`task_retry_delay` is the task tier's one decision (run again? after how long?);
`make_retry_condition` adapts it to the plain function Prefect wants as a task's
`retry_condition_fn`, and `extract_batch` adapts it to the rounds of a record.

Example:
    >>> from prefect_openai_chat.resilience.policy import RetryPolicy
    >>> policy = RetryPolicy(max_attempts=4, task_retries=2)
    >>> policy.max_total_attempts
    12
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from tenacity.wait import wait_base

from prefect_openai_chat.resilience.classify import (
    Override,
    Verdict,
    build_verdicts,
    error_row,
)
from prefect_openai_chat.resilience.waits import wait_exponential_full_jitter, wait_retry_after

MAX_TASK_RETRIES = 10  # the task tier's ceiling (Prefect `retries` on the plugin's tasks)


class RetryPolicy(BaseModel):
    """Retry settings and decisions, shared by the in-call tier and the task tier.

    Attributes:
        max_attempts: HTTP attempts per logical call within one task run, the first included.
        backoff_base: First full-jitter backoff window, in seconds (doubles per attempt).
        backoff_cap: Largest backoff window, in seconds.
        retry_after_cap: Longest server-requested Retry-After honoured, in seconds.
        task_retries: Prefect task re-runs for errors that outlast the in-call tier.
        task_retry_delay_s: Seconds the task tier waits before running the task again (the
            block's `circuit_reset_timeout_s`: the time an open circuit takes to probe).
        rate_limit_patience_s: The longest one call waits out 429 rate_limit_exceeded
            answers, from the first; they count neither against `max_attempts` nor the budget.
        outage_patience_s: How long, from when a circuit opened, calls wait for its half-open
            probe instead of failing; past it they fail at once until a probe succeeds.
        overrides: Error-table rows mapped to another action or verdict, e.g. `{"409": "fail"}`.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    max_attempts: int = Field(4, ge=1, le=100)
    backoff_base: float = Field(0.5, ge=0.0)
    backoff_cap: float = Field(20.0, ge=0.0)
    retry_after_cap: float = Field(60.0, ge=0.0)
    task_retries: int = Field(2, ge=0, le=MAX_TASK_RETRIES)
    task_retry_delay_s: float = Field(30.0, ge=0.0)
    rate_limit_patience_s: float = Field(300.0, ge=0.0)
    outage_patience_s: float = Field(120.0, ge=0.0)
    overrides: dict[str, Override] = Field(default_factory=dict)

    @field_validator("overrides")
    @classmethod
    def _known_rows(cls, value: dict[str, Override]) -> dict[str, Override]:
        build_verdicts(value)  # raises a ValueError naming the bad row or action
        return value

    @cached_property
    def _verdicts(self) -> dict[str, Verdict]:
        return build_verdicts(self.overrides)

    def classify(self, exc: BaseException) -> Verdict:
        """The verdict for `exc` under this policy's table.

        Example:
            >>> RetryPolicy().classify(TimeoutError()).task_retry
            True
        """
        return self._verdicts[error_row(exc)]

    def wait(self) -> wait_base:
        """The in-call wait strategy: Retry-After (capped), else full-jitter backoff."""
        return wait_retry_after(
            cap=self.retry_after_cap,
            fallback=wait_exponential_full_jitter(self.backoff_base, self.backoff_cap),
        )

    @property
    def max_total_attempts(self) -> int:
        """The bound on HTTP attempts for one logical call across both tiers.

        Each task run makes at most `max_attempts` attempts (a 401 reload retry is one
        of them); the task tier runs the call at most `task_retries + 1` times.
        """
        return self.max_attempts * (self.task_retries + 1)


ConditionResult = bool | Awaitable[bool]
TASK_TIER_MARK = "_prefect_openai_chat_task_tier"


def mark_for_task_tier(exc: BaseException, policy: RetryPolicy) -> None:
    """Record on `exc` what `policy` says about running the task again for it.

    `task_retry_delay` reads the mark, so the task tier honours the policy of whichever
    `ChatModel` raised: whether to run again, how many times, and after how long.

    Example:
        >>> error = TimeoutError("stalled")
        >>> mark_for_task_tier(error, RetryPolicy(task_retries=1))
        >>> getattr(error, TASK_TIER_MARK)
        (True, 1, 30.0)
    """
    mark = (policy.classify(exc).task_retry, policy.task_retries, policy.task_retry_delay_s)
    setattr(exc, TASK_TIER_MARK, mark)


def task_retry_delay(outcome: object, runs: int, policy: RetryPolicy) -> float | None:
    """The task tier's one decision: after `runs` runs, the last failing with `outcome`,
    the seconds to wait before running again, or None for no further run.

    An error marked by `mark_for_task_tier` is decided by the marking policy; any other
    by `policy`. Prefect's `retry_condition_fn` (`make_retry_condition`) and the rounds
    of a record inside `extract_batch` are both adapters of this function.

    Example:
        >>> policy = RetryPolicy(task_retries=1, task_retry_delay_s=5)
        >>> [task_retry_delay(TimeoutError(), runs, policy) for runs in (1, 2)]
        [5.0, None]
        >>> task_retry_delay(ValueError("bad input"), 1, policy) is None
        True
    """
    if not isinstance(outcome, BaseException):
        return None
    mark = getattr(outcome, TASK_TIER_MARK, None)
    if mark is None:
        retry, limit, delay = (
            policy.classify(outcome).task_retry,
            policy.task_retries,
            policy.task_retry_delay_s,
        )
    else:
        retry, limit, delay = mark
    return float(delay) if retry and runs <= limit else None


def make_retry_condition(
    policy: RetryPolicy, on_retry: Callable[[float], None] | None = None
) -> Callable[[Any, Any, Any], ConditionResult]:
    """A plain function for a Prefect task's `retry_condition_fn`: `task_retry_delay`.

    Prefect calls it with `(task, task_run, state)`. It takes the exception from the
    failed state (`state.data`, else `state.result(raise_on_failure=False)`) and the
    task run's `run_count`, and answers whether `task_retry_delay` gives a delay;
    `on_retry` receives that delay. In an async task Prefect's `state.result` is a
    coroutine; the condition then returns an awaitable, which Prefect awaits.

    Example:
        >>> class FailedState:
        ...     def result(self, raise_on_failure=True):
        ...         return TimeoutError("stalled")
        >>> make_retry_condition(RetryPolicy())(None, None, FailedState())
        True
    """

    def decide(outcome: object, task_run: Any) -> bool:
        delay = task_retry_delay(outcome, getattr(task_run, "run_count", 0), policy)
        if delay is not None and on_retry is not None:
            on_retry(delay)
        return delay is not None

    async def decide_later(pending: Awaitable[object], task_run: Any) -> bool:
        return decide(await pending, task_run)

    def retry_condition(task: Any, task_run: Any, state: Any) -> ConditionResult:
        data = getattr(state, "data", None)
        if isinstance(data, BaseException):
            return decide(data, task_run)
        outcome = state.result(raise_on_failure=False)
        if inspect.isawaitable(outcome):
            return decide_later(outcome, task_run)
        return decide(outcome, task_run)

    return retry_condition
