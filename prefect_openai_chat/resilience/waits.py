"""Wait strategies (tenacity style): honour the server's Retry-After, else back off with jitter.

`wait_retry_after` is a tenacity wait object: it reads `retry-after-ms`, then
`retry-after` (seconds or an HTTP date) from the last exception's response
headers, caps it, and otherwise defers to its fallback (full-jitter exponential
backoff by default). It composes with tenacity's operators like any other wait.

Example:
    >>> from tenacity import wait_fixed
    >>> from prefect_openai_chat.resilience.waits import wait_retry_after
    >>> w = wait_retry_after(cap=60.0, fallback=wait_fixed(1.5))
    >>> w + wait_fixed(0.5)  # doctest: +ELLIPSIS
    <tenacity.wait.wait_combine object at ...>
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from tenacity import RetryCallState
from tenacity.wait import wait_base, wait_random_exponential


def wait_exponential_full_jitter(base: float = 0.5, cap: float = 20.0) -> wait_base:
    """Full-jitter backoff: uniform(0, min(cap, base * 2 ** (attempt - 1))) seconds.

    Example:
        >>> w = wait_exponential_full_jitter(0.5, 20.0)
        >>> type(w).__name__
        'wait_random_exponential'
    """
    return wait_random_exponential(multiplier=base, max=cap)


def headers_of(exc: BaseException | None) -> Mapping[str, str] | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return headers if isinstance(headers, Mapping) or hasattr(headers, "get") else None


def parse_retry_after(
    headers: Mapping[str, str] | Any | None, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds the server asked us to wait, from `retry-after-ms` then `retry-after`.

    `retry-after` may be seconds or an HTTP date. Returns None when neither header
    holds a usable, non-negative, finite value.

    Example:
        >>> parse_retry_after({"retry-after-ms": "250"})
        0.25
        >>> parse_retry_after({"retry-after": "3"})
        3.0
    """
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
        return None
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return max(0.0, float(email.utils.mktime_tz(parsed)) - now())
    except (TypeError, ValueError, OverflowError):
        return None


def retry_after_of(exc: BaseException | None, now: Callable[[], float] = time.time) -> float | None:
    """The Retry-After delay carried by `exc` (an openai `APIStatusError`), if any."""
    return parse_retry_after(headers_of(exc), now)


class wait_retry_after(wait_base):
    """Wait what the server asked for (capped), else what `fallback` says.

    Args:
        cap: The longest server-requested wait honoured, in seconds.
        fallback: The wait used when the server sent no Retry-After.
        now: The wall clock used to read HTTP-date values.

    Example:
        >>> from tenacity import wait_none
        >>> wait_retry_after(cap=60.0, fallback=wait_none()).cap
        60.0
    """

    def __init__(
        self,
        cap: float = 60.0,
        fallback: wait_base | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.cap = float(cap)
        self.fallback = fallback if fallback is not None else wait_exponential_full_jitter()
        self.now = now

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        delay = retry_after_of(exc, self.now)
        if delay is not None:
            return min(delay, self.cap)
        return float(self.fallback(retry_state))


class Deadline:
    """`async with Deadline(seconds):` cancels the block after `seconds` and raises TimeoutError.

    `expired` tells a deadline's own TimeoutError from any other. `None` means no deadline.

    Example:
        >>> import asyncio
        >>> async def slow() -> bool:
        ...     window = Deadline(0.01)
        ...     try:
        ...         async with window:
        ...             await asyncio.sleep(1)
        ...     except TimeoutError:
        ...         pass
        ...     return window.expired
        >>> asyncio.run(slow())
        True
    """

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.expired = False
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None

    async def __aenter__(self) -> Deadline:
        if self.seconds is not None:
            self._task = asyncio.current_task()
            self._handle = asyncio.get_running_loop().call_later(self.seconds, self._fire)
        return self

    def _fire(self) -> None:
        self.expired = True
        if self._task is not None:
            self._task.cancel("prefect-openai-chat deadline")

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._handle is None:
            return
        self._handle.cancel()
        if self.expired and exc_type is asyncio.CancelledError:
            task = self._task
            if task is not None and hasattr(task, "uncancel"):
                task.uncancel()  # Python 3.11+: this cancellation was ours
            raise TimeoutError(f"deadline of {self.seconds} s passed") from None
