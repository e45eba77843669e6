"""Retry budget: retries may be at most a share of requests over a sliding window.

Like Finagle's `RetryBudget`: each request deposits `ratio` of a retry, each retry
withdraws one, and a small floor (`min_retries_per_window`) lets a handful of calls
retry even when traffic is low. Past the budget an error surfaces at once instead of
being retried, so an outage does not multiply the load on a dead server.

Memory is O(1) per key: the window is kept as a fixed ring of buckets.

Example:
    >>> from prefect_openai_chat.resilience.budget import RetryBudget
    >>> b = RetryBudget(ratio=0.2, min_retries_per_window=0, clock=lambda: 0.0)
    >>> for _ in range(10):
    ...     b.record_request()
    >>> [b.try_acquire_retry() for _ in range(3)]
    [True, True, False]
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from prefect_openai_chat.resilience.registry import Registry

_BUCKETS = 10
DEFAULT_RATIO = 0.2  # retries per request (the `ChatModel` block's default too)


class RetryBudget:
    """A thread-safe sliding-window retry budget.

    Args:
        ratio: Retries allowed per request over the window (0.2 means 20%).
        window_s: Length of the sliding window in seconds.
        min_retries_per_window: Retries always allowed per window, whatever the traffic.
        clock: A monotonic clock in seconds (inject one in tests).
    """

    def __init__(
        self,
        ratio: float = DEFAULT_RATIO,
        window_s: float = 10.0,
        min_retries_per_window: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive seconds, got {window_s!r}")
        if min_retries_per_window < 0:
            raise ValueError(f"min_retries_per_window must be >= 0, got {min_retries_per_window}")
        self.set_ratio(ratio)
        self.window_s = window_s
        self.min_retries_per_window = min_retries_per_window
        self._clock = clock
        self._width = window_s / _BUCKETS
        self._requests = [0] * _BUCKETS
        self._retries = [0] * _BUCKETS
        self._epoch = math.floor(clock() / self._width)  # bucket number of the newest bucket
        self._lock = threading.Lock()

    def set_ratio(self, ratio: float) -> None:
        """Allow `ratio` retries per request from now on."""
        if not (math.isfinite(ratio) and ratio >= 0.0):
            raise ValueError(f"ratio must be a share of requests such as 0.2, got {ratio!r}")
        self.ratio = ratio

    def _advance(self) -> None:
        """Zero the buckets that slid out of the window since the last call (lock held)."""
        epoch = math.floor(self._clock() / self._width)
        gap = epoch - self._epoch
        if gap <= 0:
            return
        for i in range(1, min(gap, _BUCKETS) + 1):
            slot = (self._epoch + i) % _BUCKETS
            self._requests[slot] = 0
            self._retries[slot] = 0
        self._epoch = epoch

    def record_request(self) -> None:
        """Count one first attempt of a logical call."""
        with self._lock:
            self._advance()
            self._requests[self._epoch % _BUCKETS] += 1

    def try_acquire_retry(self) -> bool:
        """Take one retry from the budget; False when retrying now would exceed it."""
        with self._lock:
            self._advance()
            allowed = self.min_retries_per_window + self.ratio * sum(self._requests)
            if sum(self._retries) + 1 > allowed:
                return False
            self._retries[self._epoch % _BUCKETS] += 1
            return True

    def snapshot(self) -> dict[str, float]:
        """Requests and retries in the current window, and the retries still allowed."""
        with self._lock:
            self._advance()
            requests, retries = sum(self._requests), sum(self._retries)
        allowed = self.min_retries_per_window + self.ratio * requests
        return {"requests": requests, "retries": retries, "remaining": max(0.0, allowed - retries)}


_registry: Registry[RetryBudget] = Registry("retry budgets")


def get_retry_budget(key: str, **settings: Any) -> RetryBudget:
    """The process-wide budget for `key` (a circuit key) and these `settings`, made on first use.

    Callers that give the same key and settings share one budget; a block with another
    `ratio` has its own, so no block changes another's.

    Example:
        >>> get_retry_budget("doc-example", ratio=0.5) is get_retry_budget("doc-example", ratio=0.5)
        True
        >>> get_retry_budget("doc-example", ratio=0.5) is get_retry_budget("doc-example", ratio=0.1)
        False
    """
    slot = (key, *sorted(settings.items()))
    return _registry.get(slot, lambda: RetryBudget(**settings))
