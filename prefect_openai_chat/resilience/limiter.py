"""The client-side rate limiter: request and token buckets learned from the API's headers.

Nobody has to know their limits. After every response the limiter reads
`x-ratelimit-limit-*` (the bucket's capacity), `x-ratelimit-remaining-*` (what is left)
and `x-ratelimit-reset-*` (how long until the bucket is full again) for requests and
tokens, and derives the refill rate from them: `(limit - remaining) / reset`. No
60-second minute is assumed, so proxies and time-scaled simulators are paced right.
Configured `rpm` / `tpm` stay a cap on what is learned.

`acquire(tokens)` reserves one request and `tokens` tokens and sleeps until they are
covered (a bucket may go negative: the deficit is a queue; a call that wakes up late
queues again rather than burst, see `wait_for_slot`; at the start, what the request
bucket holds goes out at most at `BURST_PACE` times its rate, not in one instant);
`throttle(seconds)` pauses every caller after a 429; `settle(reserved, used)` charges
what a call used beyond its reservation. Until the first answer arrives, one call is
sent alone (a probe), so a large `concurrency` does not burst into a small, unknown limit.

State is guarded by a short threading lock, never held while sleeping: one limiter
serves every thread and event loop of a process. Reading the headers, and what they say
about a bucket's rate, is `limit_headers.py`. `SharedRateLimiter`
(`limiter_redis.py`) keeps the buckets in Redis for several processes.

Example:
    >>> import asyncio
    >>> from prefect_openai_chat.resilience.limiter import RateLimiter
    >>> limiter = RateLimiter()
    >>> limiter.observe({"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "30",
    ...                  "x-ratelimit-reset-requests": "29s"})
    >>> limiter.describe()
    '60 requests (refill 60/min)'
    >>> asyncio.run(limiter.acquire())
    0.0
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from prefect_openai_chat.resilience.limit_headers import (
    KINDS,
    Kind,
    LearnedBucket,
    LimitReading,
    read_limits,
)

logger = logging.getLogger("prefect_openai_chat.resilience.limiter")

Sleep = Callable[[float], Awaitable[Any]]
Tokens = int | Callable[[], int]  # a count, or a function that counts when asked

PROBE_TIMEOUT_S = 30.0  # a safety net: the probe's answer or error ends the wait sooner
# Learned rates are paced below the limit: headers are rounded, calls sent on time do not
# reach the server on time, and an answer's length is known only after it (tokens).
PACING: dict[Kind, float] = {"requests": 0.99, "tokens": 0.97}
_POLL_S = 0.01
# A cautious start: what the request bucket holds when the first headers arrive goes out
# at most at this many times the refill rate, not in one instant. Every call waiting for
# the probe wakes together; sending dozens at once, a client sends them late and bunched,
# on top of the ones paced after them, and the server's bucket (drained by the burst)
# answers those 429. Once the bucket has been emptied once, calls are paced by it alone.
BURST_PACE = 3.0
LATE_S = 0.25  # a call that wakes this much past its slot (or one slot's width) queues again
MAX_RESERVATIONS = 3


async def wait_for_slot(
    reserve: Callable[[], Awaitable[float]],
    slot_s: float,
    sleep: Sleep,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Reserve a slot, sleep until it comes, and queue again when the wake-up came too late.

    A process whose event loop stalled (a long synchronous step, a busy machine) wakes all
    its sleeping calls at once, long after their slots: sent together they would be a burst
    the server's bucket was never asked to hold. A call that wakes more than
    `max(LATE_S, slot_s)` after its slot lets the slot go (it stays spent, which only
    leaves the server's bucket fuller) and reserves again, at most `MAX_RESERVATIONS` times
    in all. Returns the seconds reserved to wait.

    Example:
        >>> import asyncio
        >>> async def reserve() -> float:
        ...     return 0.01
        >>> asyncio.run(wait_for_slot(reserve, slot_s=0.01, sleep=asyncio.sleep))
        0.01
    """
    waited = 0.0
    for _ in range(MAX_RESERVATIONS):
        asked_at = clock()
        wait = await reserve()
        if wait <= 0:
            break
        await sleep(wait)
        waited += wait
        late = clock() - (asked_at + wait)
        if late <= max(LATE_S, slot_s):
            break
        logger.debug("rate limiter: woke %.3fs after the slot; queueing again", late)
    return waited


class _Bucket:
    """A token bucket that may go negative: a negative balance is a queue of reservations."""

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity, self.rate = capacity, rate
        self.balance, self.stamp = capacity, now

    def refill(self, now: float) -> None:
        self.balance = min(self.capacity, self.balance + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, amount: float, now: float) -> float:
        """Deduct `amount`; return the seconds until the balance is back to zero."""
        self.refill(now)
        self.balance -= min(amount, self.capacity)  # a huge request waits one full refill
        return 0.0 if self.balance >= 0 else -self.balance / self.rate


class RateLimiter:
    """Requests-per-minute and tokens-per-minute pacing, learned from the API or configured.

    Args:
        rpm: A cap on requests per minute (None: only what the API says).
        tpm: A cap on tokens per minute (None: only what the API says).
        clock: A monotonic clock in seconds.
        sleep: The async sleep used to wait (inject a recording one in tests).
        learn: Learn limits from `x-ratelimit-*` headers (False: only the caps, no probe).
    """

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        learn: bool = True,
    ) -> None:
        self._clock, self._sleep, self._learn = clock, sleep, learn
        self._lock = threading.Lock()
        self._caps: dict[Kind, float | None] = {}
        self._learned: dict[Kind, LearnedBucket] = {kind: LearnedBucket() for kind in KINDS}
        self._buckets: dict[Kind, _Bucket | None] = {kind: None for kind in KINDS}
        self._paused_until = 0.0
        self._burst_at = 0.0  # the earliest send time of the next request (BURST_PACE)
        self._starting = learn  # until the request bucket is first emptied (BURST_PACE)
        self._probe_started: float | None = None
        self._seen_headers = not learn
        self._share = 1.0
        self.expected_completion = 0.0  # tokens a call without a completion room writes
        self.set_caps(rpm, tpm)

    # --- configuration ---------------------------------------------------------------

    def set_caps(self, rpm: float | None, tpm: float | None) -> None:
        """Cap the limits at `rpm` / `tpm` per minute (None: no cap for that kind)."""
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be a positive number or None, got {value!r}")
        if self._caps == {"requests": rpm, "tokens": tpm}:
            return
        with self._lock:
            self._caps = {"requests": rpm, "tokens": tpm}
            self._sync_buckets(self._clock())

    @property
    def share(self) -> float:
        """The part of the limits this limiter may use (1.0; less while standing in for Redis)."""
        return self._share

    @share.setter
    def share(self, fraction: float) -> None:
        with self._lock:
            self._share = min(1.0, max(fraction, 1e-6))
            self._sync_buckets(self._clock())

    def effective(self, kind: Kind, paced: bool = True) -> tuple[float, float] | None:
        """(capacity, units per second) in force for `kind`, or None when unlimited.

        `paced=False` gives the learned rate itself, not the share the calls are paced at.
        """
        cap, learned = self._caps.get(kind), self._learned[kind]
        # A bucket that never shows anything spent (an unlimited key reporting nominal
        # figures) is not counting: it has a capacity, but no rate to pace by.
        capacity = learned.capacity if learned.rate else None
        factor = PACING[kind] if paced else 1.0
        rate = learned.rate * factor if learned.rate else None
        if cap is not None:
            capacity = cap if capacity is None else min(cap, capacity)
            rate = cap / 60.0 if rate is None else min(cap / 60.0, rate)
        if capacity is None or rate is None:
            return None
        return capacity * self._share, rate * self._share

    @property
    def learned(self) -> dict[Kind, tuple[float, float] | None]:
        """What the headers taught, by kind: (capacity, units per second), or None."""
        with self._lock:
            return {
                kind: (item.capacity, item.rate) if item.capacity and item.rate else None
                for kind, item in self._learned.items()
            }

    def _sync_buckets(self, now: float) -> None:
        """Give each bucket the capacity and rate in force (call with the lock held)."""
        for kind in KINDS:
            limits = self.effective(kind)
            bucket = self._buckets.get(kind)
            if limits is None:
                self._buckets[kind] = None
            elif bucket is None:
                self._buckets[kind] = _Bucket(*limits, now)
            else:
                bucket.refill(now)
                bucket.capacity, bucket.rate = limits
                bucket.balance = min(bucket.balance, bucket.capacity)

    # --- the calls' side -------------------------------------------------------------

    @property
    def limits_tokens(self) -> bool:
        """Whether `acquire` needs a token count (a token limit is known)."""
        return self._buckets["tokens"] is not None

    @property
    def paused_for(self) -> float:
        """Seconds left in the current pause (0.0 when not paused)."""
        return max(0.0, self._paused_until - self._clock())

    def cost_of(self, tokens: Tokens) -> int:
        """The tokens to reserve: 0 while no token limit is known."""
        if not self.limits_tokens:
            return 0
        return tokens() if callable(tokens) else tokens

    def reserve(self, tokens: int = 0) -> float:
        """Reserve one request and `tokens` tokens; return the seconds to wait before sending."""
        with self._lock:
            now = self._clock()
            wait = max(0.0, self._paused_until - now)
            requests, token_bucket = self._buckets["requests"], self._buckets["tokens"]
            if requests is not None:
                wait = max(wait, requests.take(1, now))
                if self._starting:
                    wait = max(wait, self._burst_at - now)
                    self._burst_at = now + wait + 1.0 / (BURST_PACE * requests.rate)
                    self._starting = requests.balance > 0
            if token_bucket is not None and tokens > 0:
                wait = max(wait, token_bucket.take(tokens, now))
            return wait

    def balance(self, kind: Kind) -> float | None:
        """What the `kind` bucket holds now (negative: reservations queued); None: no limit."""
        with self._lock:
            bucket = self._buckets[kind]
            if bucket is None:
                return None
            bucket.refill(self._clock())
            return bucket.balance

    async def acquire(
        self, tokens: Tokens = 0, sleep: Sleep | None = None, probe: bool = True
    ) -> float:
        """Wait until one request with `tokens` tokens may be sent; return the seconds waited.

        `tokens` may be a function, called only when a token limit is known (after the wait
        for the first headers). `sleep` replaces the limiter's own sleep for this call (a
        caller's injected sleep); `probe=False` skips the wait for the first headers.
        """
        sleep = sleep or self._sleep
        waited = await self.await_first_headers(sleep) if probe else 0.0
        cost = self.cost_of(tokens)

        async def reserve() -> float:
            return self.reserve(cost)

        return waited + await wait_for_slot(reserve, self.slot_s, sleep, self._clock)

    @property
    def probing(self) -> bool:
        """True until the first answer's headers have been seen (calls wait for the probe)."""
        return not self._seen_headers

    @property
    def slot_s(self) -> float:
        """Seconds between two requests at the pace in force (0.0 when unlimited)."""
        limits = self.effective("requests")
        return 1.0 / limits[1] if limits else 0.0

    async def await_first_headers(self, sleep: Sleep) -> float:
        """Until the first answer arrives, one call goes alone; the others wait for it.

        Caps do not skip this: a cap of 3,000 requests a minute allows a burst of 3,000,
        and the server's real bucket may hold far fewer.
        """
        if self._seen_headers:
            return 0.0
        with self._lock:
            if self._probe_started is None:
                self._probe_started = self._clock()
                return 0.0
        waited = 0.0
        while not self._seen_headers and waited < PROBE_TIMEOUT_S:
            await sleep(_POLL_S)
            waited += _POLL_S
        return waited

    def throttle(self, seconds: float) -> None:
        """Pause every caller for `seconds` from now (after a 429)."""
        if seconds <= 0:
            return
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def settle(self, reserved: int, used: int, written: int | None = None) -> None:
        """Reconcile a reservation with what the API charged: `used - reserved` more tokens
        (or fewer, given back). `written`: the completion tokens of a call that asked for no
        room, which teaches what the next such call should reserve for its answer.
        """
        if written is not None:
            self.expected_completion = 0.8 * self.expected_completion + 0.2 * written
        bucket = self._buckets["tokens"]
        if used != reserved and bucket is not None:
            with self._lock:
                bucket.refill(self._clock())
                bucket.balance = min(bucket.capacity, bucket.balance - (used - reserved))

    def observe(self, headers: Mapping[str, str] | Any) -> None:
        """Learn from a response's `x-ratelimit-*` headers and align the buckets with them."""
        self.learn(read_limits(headers) if self._learn else {})

    def learn(self, readings: Mapping[Kind, LimitReading]) -> None:
        """`observe` for headers already read (`read_limits`); with `learn=False` the
        readings are ignored."""
        if not self._learn:
            readings = {}
        with self._lock:
            self._seen_headers = True  # a server without the headers: no probe any more
            now = self._clock()
            for kind, reading in readings.items():
                self._learned[kind].observe(reading)
            if readings:
                self._sync_buckets(now)
            for kind, reading in readings.items():
                bucket = self._buckets[kind]
                if bucket is not None:  # others (processes, jobs) spend the same allowance
                    bucket.refill(now)
                    # One unit of headroom: the server's clock and ours are not one clock.
                    bucket.balance = min(bucket.balance, reading.remaining - 1)

    def describe(self) -> str:
        """The limits in force, for logs and error messages, e.g. `5000 requests/min`."""
        parts = []
        for kind in KINDS:
            limits = self.effective(kind, paced=False)
            if limits is not None:
                parts.append(f"{limits[0]:g} {kind} (refill {limits[1] * 60:.4g}/min)")
        return ", ".join(parts) or "no limits known"


class Limiter(Protocol):
    """What the in-call tier needs of a limiter: `RateLimiter` or `SharedRateLimiter`."""

    @property
    def limits_tokens(self) -> bool: ...

    @property
    def paused_for(self) -> float: ...

    @property
    def probing(self) -> bool: ...

    def set_caps(self, rpm: float | None, tpm: float | None) -> None: ...

    async def acquire(self, tokens: Tokens = 0, sleep: Sleep | None = None) -> float: ...

    def throttle(self, seconds: float) -> None: ...

    def observe(self, headers: Mapping[str, str] | Any) -> None: ...

    @property
    def expected_completion(self) -> float: ...

    def settle(self, reserved: int, used: int, written: int | None = None) -> None: ...

    def describe(self) -> str: ...
