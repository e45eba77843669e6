"""Resilience core (no Prefect): error classification, retry policy and tiers, retry
budget, circuit breaker guard and client-side rate limiter.

Example:
    >>> from prefect_openai_chat.resilience import RetryPolicy
    >>> RetryPolicy().classify(TimeoutError()).action.value
    'retry'
"""

from prefect_openai_chat.resilience.budget import RetryBudget, get_retry_budget
from prefect_openai_chat.resilience.circuit import (
    CircuitEvent,
    CircuitGuard,
    Permit,
    add_circuit_listener,
    circuit_key,
    describe_error,
    get_circuit_guard,
    remove_circuit_listener,
)
from prefect_openai_chat.resilience.classify import (
    DEFAULT_VERDICTS,
    Action,
    Verdict,
    build_verdicts,
    classify,
    error_row,
)
from prefect_openai_chat.resilience.concurrency import AdaptiveConcurrency
from prefect_openai_chat.resilience.limit_headers import parse_duration, read_limits
from prefect_openai_chat.resilience.limiter import Limiter, RateLimiter
from prefect_openai_chat.resilience.limiter_registry import get_rate_limiter
from prefect_openai_chat.resilience.policy import (
    RetryPolicy,
    make_retry_condition,
    mark_for_task_tier,
    task_retry_delay,
)
from prefect_openai_chat.resilience.retrying import RetryEvent, call_with_retries
from prefect_openai_chat.resilience.waits import (
    parse_retry_after,
    retry_after_of,
    wait_exponential_full_jitter,
    wait_retry_after,
)

__all__ = [
    "DEFAULT_VERDICTS",
    "Action",
    "AdaptiveConcurrency",
    "CircuitEvent",
    "CircuitGuard",
    "Limiter",
    "Permit",
    "RateLimiter",
    "RetryBudget",
    "RetryEvent",
    "RetryPolicy",
    "Verdict",
    "add_circuit_listener",
    "build_verdicts",
    "call_with_retries",
    "circuit_key",
    "classify",
    "describe_error",
    "error_row",
    "get_circuit_guard",
    "get_rate_limiter",
    "get_retry_budget",
    "make_retry_condition",
    "mark_for_task_tier",
    "parse_duration",
    "parse_retry_after",
    "read_limits",
    "remove_circuit_listener",
    "retry_after_of",
    "task_retry_delay",
    "wait_exponential_full_jitter",
    "wait_retry_after",
]
