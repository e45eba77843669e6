"""The resilience pieces one runner uses, bundled: policy, circuit, budget, limiter, gate.

Example:
    >>> from prefect_openai_chat.chat.protection import Protection
    >>> Protection().policy.max_attempts
    4
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prefect_openai_chat.resilience import (
    AdaptiveConcurrency,
    CircuitGuard,
    Limiter,
    RetryBudget,
    RetryEvent,
    RetryPolicy,
)


@dataclass
class Protection:
    """What guards the calls of one runner; every part but the policy is optional."""

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    guard: CircuitGuard | None = None
    budget: RetryBudget | None = None
    limiter: Limiter | None = None
    gate: AdaptiveConcurrency | None = None
    on_retry: Callable[[RetryEvent], None] | None = None
    reload_credentials: Callable[[], Awaitable[bool]] | None = None
