"""Concurrency that finds its own level: at most `maximum` calls in flight, fewer under strain.

`AdaptiveConcurrency` is a semaphore whose size moves between 1 and `maximum`
by additive increase, multiplicative decrease (AIMD, as TCP does): every success
adds `1 / limit` (one slot per round of calls); a 429 that shows an empty bucket
halves the limit, at most once per round trip (a burst of 429s is one signal). So
`concurrency=64` against a small limit stops flooding the server, and a large limit
is used in full.

Latency is not a signal here: an LLM call takes 10 times longer for a 10 times
longer answer, and a busy client machine slows every call; both would shrink the
level for no gain. The 429 is the server's own, explicit word.

Only HTTP attempts hold a slot: a call that waits out a 429, a backoff or the rate
limiter does not, so it never idles the others. The gate works across threads and
event loops (a short threading lock; waiters are woken on their own loop).

Example:
    >>> import asyncio
    >>> from prefect_openai_chat.resilience.concurrency import AdaptiveConcurrency
    >>> gate = AdaptiveConcurrency(8)
    >>> async def call() -> None:
    ...     async with gate.slot():
    ...         await asyncio.sleep(0)
    >>> asyncio.run(call())
    >>> gate.record(latency_s=None, overloaded=True)
    >>> gate.limit
    4
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

logger = logging.getLogger("prefect_openai_chat.resilience.concurrency")

_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


class AdaptiveConcurrency:
    """An AIMD-sized semaphore shared by every call of one job.

    Args:
        maximum: The most calls in flight (the user's `concurrency`).
        name: Shown in the log line when the level drops.
        clock: A monotonic clock in seconds.
    """

    def __init__(
        self, maximum: int, name: str = "calls", clock: Callable[[], float] = time.monotonic
    ) -> None:
        if maximum < 1:
            raise ValueError(f"the most calls in flight must be at least 1, got {maximum}")
        self.maximum, self.name = maximum, name
        self._clock = clock
        self._limit = float(maximum)
        self.lowest = maximum
        self._in_flight = 0
        self._waiters: deque[_Waiter] = deque()
        self._lock = threading.Lock()
        self._last_decrease = -float("inf")
        self._latency: float | None = None  # moving average: one round trip

    @property
    def limit(self) -> int:
        """The calls allowed in flight now."""
        return max(1, int(self._limit))

    @property
    def in_flight(self) -> int:
        """The calls in flight now."""
        return self._in_flight

    def slot(self) -> _Slot:
        """Hold one of the `limit` slots for the duration of the `async with` block."""
        return _Slot(self)

    async def _acquire(self) -> None:
        with self._lock:
            if self._in_flight < self.limit and not self._waiters:
                self._in_flight += 1
                return
            loop = asyncio.get_running_loop()
            waiter: _Waiter = (loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            await waiter[1]
        except asyncio.CancelledError:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif waiter[1].done() and not waiter[1].cancelled():
                    self._release_locked()  # the slot was handed over as we were cancelled
            raise

    def _release(self) -> None:
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        self._in_flight -= 1
        self._wake_locked()

    def _wake_locked(self) -> None:
        running = asyncio._get_running_loop()
        while self._waiters and self._in_flight < self.limit:
            loop, future = self._waiters.popleft()
            if loop is running:  # this thread's own loop: hand the slot over here and now
                if not future.cancelled():
                    self._in_flight += 1
                    future.set_result(None)
                continue
            self._in_flight += 1  # handed over; `_hand_over` gives it back if nobody takes it
            try:
                loop.call_soon_threadsafe(self._hand_over, future)
            except RuntimeError:  # that loop is closed: its waiter is gone
                self._in_flight -= 1

    def _hand_over(self, future: asyncio.Future[None]) -> None:
        if future.cancelled():
            self._release()
        else:
            future.set_result(None)

    def record(self, latency_s: float | None, overloaded: bool = False) -> None:
        """Adapt to one finished attempt: its latency on success, `overloaded` on a 429."""
        with self._lock:
            if overloaded:
                self._decrease(0.5, self._clock(), self._latency or 1.0, "the server answered 429")
                return
            if latency_s is None:
                return
            self._latency = (
                latency_s if self._latency is None else 0.9 * self._latency + 0.1 * latency_s
            )
            if self._limit < self.maximum:
                self._limit = min(float(self.maximum), self._limit + 1.0 / self._limit)
                self._wake_locked()

    def _decrease(self, factor: float, now: float, round_trip: float, why: str) -> None:
        if now - self._last_decrease < round_trip:
            return  # one decrease per round trip: a burst of 429s is one signal
        before = self.limit
        self._limit = max(1.0, self._limit * factor)
        self._last_decrease = now
        self.lowest = min(self.lowest, self.limit)
        if self.limit != before:
            logger.info(
                "%s: concurrency %d -> %d of %d (%s)",
                self.name,
                before,
                self.limit,
                self.maximum,
                why,
            )


class _Slot:
    """`async with gate.slot()`: one slot of `gate` held for the block (no generator)."""

    __slots__ = ("_gate",)

    def __init__(self, gate: AdaptiveConcurrency) -> None:
        self._gate = gate

    async def __aenter__(self) -> None:
        await self._gate._acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._gate._release()
