"""A small client-side rate limiter: request and token buckets, shared pauses after a 429.

`acquire(tokens)` reserves one request and `tokens` tokens and sleeps until they
are available; `throttle(seconds)` (called on a 429) pauses *every* caller of the
limiter, not only the one that was told to slow down; `update_from_headers` reads
OpenAI's `x-ratelimit-remaining-*` / `x-ratelimit-reset-*` headers.

The limiter works across threads and event loops: state is guarded by a short
threading lock that is never held while sleeping.

Example:
    >>> import asyncio
    >>> from prefect_openai_chat.resilience.limiter import RateLimiter, parse_duration
    >>> asyncio.run(RateLimiter(rpm=600).acquire())
    0.0
    >>> parse_duration("6m0s"), parse_duration("12ms")
    (360.0, 0.012)
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from prefect_openai_chat.resilience.registry import Registry

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float | None:
    """Seconds in a rate-limit reset value such as `"1s"`, `"6m0s"`, `"12ms"` or `"0.5"`."""
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


class _Bucket:
    """A token bucket that may go negative: a negative balance is a queue of reservations."""

    def __init__(self, per_minute: float, now: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.balance = float(per_minute)
        self.stamp = now

    def take(self, amount: float, now: float) -> float:
        """Deduct `amount`; return the seconds until the balance is back to zero."""
        self.balance = min(self.capacity, self.balance + (now - self.stamp) * self.rate)
        self.stamp = now
        self.balance -= min(amount, self.capacity)  # a huge request waits one full refill
        return 0.0 if self.balance >= 0 else -self.balance / self.rate


class RateLimiter:
    """Client-side requests-per-minute and tokens-per-minute limits.

    Args:
        rpm: Requests per minute, or None for no request limit.
        tpm: Tokens per minute, or None for no token limit.
        clock: A monotonic clock in seconds.
        sleep: The async sleep used to wait (inject a recording one in tests).
    """

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be a positive number or None, got {value!r}")
        self._clock = clock
        self._sleep = sleep
        now = clock()
        self._requests = _Bucket(rpm, now) if rpm else None
        self._tokens = _Bucket(tpm, now) if tpm else None
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def reserve(self, tokens: int = 0, include_pause: bool = True) -> float:
        """Reserve one request and `tokens` tokens; return the seconds to wait before sending.

        `include_pause=False` is for the caller that was told to slow down and has
        already waited what the server asked: the shared pause is for the others.
        """
        with self._lock:
            now = self._clock()
            wait = max(0.0, self._paused_until - now) if include_pause else 0.0
            if self._requests is not None:
                wait = max(wait, self._requests.take(1, now))
            if self._tokens is not None and tokens > 0:
                wait = max(wait, self._tokens.take(tokens, now))
            return wait

    async def acquire(
        self,
        tokens: int = 0,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
        include_pause: bool = True,
    ) -> float:
        """Wait until one request with `tokens` tokens may be sent; return the seconds waited.

        `sleep` replaces the limiter's own sleep for this call (a caller's injected sleep).
        """
        wait = self.reserve(tokens, include_pause)
        if wait > 0:
            await (sleep or self._sleep)(wait)
        return wait

    def throttle(self, seconds: float) -> None:
        """Pause every caller for `seconds` from now (e.g. after a 429)."""
        if seconds <= 0:
            return
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    @property
    def limits_tokens(self) -> bool:
        """Whether `acquire` needs a token count (a tokens-per-minute limit is set)."""
        return self._tokens is not None

    @property
    def paused_for(self) -> float:
        """Seconds left in the current pause (0.0 when not paused)."""
        return max(0.0, self._paused_until - self._clock())

    def update_from_headers(self, headers: Mapping[str, str] | Any) -> None:
        """Align the buckets with `x-ratelimit-remaining-*` and pause until `reset-*` at zero."""
        for kind, bucket in (("requests", self._requests), ("tokens", self._tokens)):
            remaining_text = headers.get(f"x-ratelimit-remaining-{kind}")
            if remaining_text is None:
                continue
            try:
                remaining = float(remaining_text)
            except ValueError:
                continue
            if remaining <= 0:
                reset = parse_duration(str(headers.get(f"x-ratelimit-reset-{kind}") or ""))
                if reset:
                    self.throttle(reset)
            if bucket is not None:
                with self._lock:
                    bucket.balance = min(bucket.balance, remaining)


_registry: Registry[RateLimiter] = Registry()


def get_rate_limiter(key: str, **settings: Any) -> RateLimiter:
    """The process-wide limiter for `key` (a circuit key) and `settings`, created on first use.

    Example:
        >>> get_rate_limiter("doc", rpm=60) is get_rate_limiter("doc", rpm=60)
        True
    """
    return _registry.get(key, settings, lambda: RateLimiter(**settings))
