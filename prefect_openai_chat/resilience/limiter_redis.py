"""One rate limiter for every worker: the buckets live in Redis, updated by one Lua script.

`SharedRateLimiter` has the interface of `RateLimiter`. Each process still learns
the limits from the headers it sees (its local `RateLimiter` does that); every
reservation runs one atomic Lua script in Redis that refills the shared buckets on
Redis's own clock, applies what this process learned (capacity, refill rate, the
latest `remaining`, a pause after a 429, tokens used beyond a reservation), takes
one request and the call's tokens, and answers how long to wait. A process that
has learned nothing yet uses what another process stored.

Why a script and not a rate-limiting library: `limits` and `pyrate-limiter` answer
"allowed or not" for fixed rates given up front; here the limits are learned and
change at run time, a reservation may go into debt and must say how long to wait
(a fair queue instead of polling), and what a call really used is charged after
it. That is twenty lines of Lua, run atomically by Redis.

If Redis stops answering, the limiter logs one warning and falls back to a local
share of the limits (1 / the number of workers seen in the last 30 s), then rejoins
when Redis answers again (checked every `recheck_s` seconds).

Example:
    >>> import asyncio
    >>> from prefect_openai_chat.resilience.limiter_redis import SharedRateLimiter
    >>> limiter = SharedRateLimiter("doc", "redis://127.0.0.1:1/0", rpm=600)  # no Redis there
    >>> asyncio.run(limiter.acquire())  # falls back to the local share, with one warning
    0.0
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from typing import Any

from prefect_openai_chat.resilience.limit_headers import KINDS, Kind, read_limits
from prefect_openai_chat.resilience.limiter import RateLimiter, Sleep, Tokens, wait_for_slot

logger = logging.getLogger("prefect_openai_chat.resilience.limiter")

MEMBER_TTL_S = 30.0  # a worker that has not reserved for this long no longer counts

# KEYS: the buckets' hash, the workers' sorted set.
# ARGV: worker id, then per kind (requests, tokens): capacity, rate/s (0: unknown),
# remaining to align to ('none': none), units to charge, units to take; then the pause in
# seconds (0: none). Returns {seconds to wait, workers seen}.
_RESERVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function bucket(p, cap, rate, align, charge, take)
  if cap <= 0 or rate <= 0 then
    cap = tonumber(redis.call('HGET', KEYS[1], p .. 'c')) or 0
    rate = tonumber(redis.call('HGET', KEYS[1], p .. 'r')) or 0
  end
  if cap <= 0 or rate <= 0 then return 0 end
  local level = tonumber(redis.call('HGET', KEYS[1], p .. 'l')) or cap
  local at = tonumber(redis.call('HGET', KEYS[1], p .. 'a')) or now
  level = math.min(cap, level + math.max(0, now - at) * rate)
  if align ~= nil and align < level then level = align end
  level = math.min(cap, level - charge) - math.min(take, cap)
  redis.call('HSET', KEYS[1], p .. 'c', cap, p .. 'r', rate, p .. 'l', level, p .. 'a', now)
  if level < 0 then return -level / rate end
  return 0
end
local wait = 0
for i, p in ipairs({'r', 't'}) do
  local b = 1 + (i - 1) * 5
  local w = bucket(p, tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]),
                   tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5]))
  if w > wait then wait = w end
end
local pause = tonumber(redis.call('HGET', KEYS[1], 'pause')) or 0
local asked = tonumber(ARGV[12])
if asked > 0 and now + asked > pause then
  pause = now + asked
  redis.call('HSET', KEYS[1], 'pause', pause)
end
if pause - now > wait then wait = pause - now end
redis.call('PEXPIRE', KEYS[1], 3600000)
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[13]))
redis.call('PEXPIRE', KEYS[2], 3600000)
return {tostring(wait), redis.call('ZCARD', KEYS[2])}
"""


class SharedRateLimiter:
    """A `RateLimiter` whose buckets every process shares through Redis.

    Args:
        key: The limiter key (endpoint, account, model).
        redis_url: e.g. `redis://127.0.0.1:6379/0`.
        rpm: A cap on requests per minute (None: what the API says).
        tpm: A cap on tokens per minute (None: what the API says).
        prefix: Redis key prefix (a distinct one per test or deployment).
        recheck_s: While Redis is away, how often to check whether it is back.
        sleep: The async sleep used to wait.
    """

    def __init__(
        self,
        key: str,
        redis_url: str,
        rpm: float | None = None,
        tpm: float | None = None,
        prefix: str = "prefect-openai-chat:limits",
        recheck_s: float = 5.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.key, self.redis_url, self.recheck_s = key, redis_url, recheck_s
        self.local = RateLimiter(rpm, tpm, sleep=sleep)  # learns, and stands in without Redis
        self._keys = [f"{prefix}:{key}", f"{prefix}:{key}:workers"]
        self._member = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        self._align: dict[Kind, float] = {}
        self._charge = 0.0
        self._pause = 0.0
        self._down_until: float | None = None
        self._went_at = 0.0  # when Redis was found away (monotonic)
        self.workers = 1
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    # --- the interface of RateLimiter ---------------------------------------------------

    def set_caps(self, rpm: float | None, tpm: float | None) -> None:
        """Cap the limits at `rpm` / `tpm` per minute."""
        self.local.set_caps(rpm, tpm)

    @property
    def limits_tokens(self) -> bool:
        """Whether `acquire` needs a token count."""
        return self.local.limits_tokens

    @property
    def paused_for(self) -> float:
        """Seconds left in this process's view of the pause."""
        return self.local.paused_for

    @property
    def probing(self) -> bool:
        """True until this process has seen the first answer's headers."""
        return self.local.probing

    @property
    def shared(self) -> bool:
        """True while the buckets live in Redis (False while falling back)."""
        return self._down_until is None

    def observe(self, headers: Mapping[str, str] | Any) -> None:
        """Learn from a response's headers; the next reservation aligns the shared buckets."""
        readings = read_limits(headers)
        self.local.learn(readings)
        with self._lock:
            for kind, reading in readings.items():
                self._align[kind] = reading.remaining - 1  # the same headroom as RateLimiter

    def throttle(self, seconds: float) -> None:
        """Pause every caller of every process for `seconds` (after a 429)."""
        self.local.throttle(seconds)
        with self._lock:
            self._pause = max(self._pause, seconds)

    @property
    def expected_completion(self) -> float:
        """Tokens a call without a completion room writes, as this process has seen."""
        return self.local.expected_completion

    def settle(self, reserved: int, used: int, written: int | None = None) -> None:
        """Reconcile a reservation with what the API charged, in the shared bucket too."""
        self.local.settle(reserved, used, written)
        with self._lock:
            self._charge += used - reserved

    def describe(self) -> str:
        """The limits in force and how they are shared."""
        how = f"shared through Redis by {self.workers} worker(s)"
        if not self.shared:
            how = f"a local 1/{self.workers} share while Redis is away"
        return f"{self.local.describe()}; {how}"

    async def acquire(self, tokens: Tokens = 0, sleep: Sleep | None = None) -> float:
        """Wait until one request with `tokens` tokens may be sent; return the seconds waited."""
        sleep = sleep or self.local._sleep
        waited = await self.local.await_first_headers(sleep)
        tokens = self.local.cost_of(tokens)
        return waited + await wait_for_slot(
            lambda: self._reserve_shared(tokens), self.local.slot_s, sleep
        )

    async def _reserve_shared(self, tokens: int) -> float:
        """One reservation in Redis (the local buckets when it does not answer): the wait."""
        if self._down_until is not None and time.monotonic() < self._down_until:
            return self.local.reserve(tokens)
        began = time.monotonic()
        try:
            wait = await self._reserve(tokens)
        except Exception as exc:  # redis.RedisError, OSError, timeouts
            self._went_away(exc)
            return self.local.reserve(tokens)
        self.local.reserve(tokens)  # spent here too: a fallback starts from what is left
        # An answer to a reservation sent before Redis was found away says nothing about now.
        if self._down_until is not None and began >= self._went_at:
            self._down_until = None
            self.local.share = 1.0
            logger.warning("rate limiter %r: Redis answers again; the limit is shared", self.key)
        return wait

    # --- Redis --------------------------------------------------------------------------

    def _client(self) -> Any:
        """The reservation script, bound to a Redis client of the running event loop."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            import redis.asyncio

            # Many calls reserve at once: wait for a free connection rather than fail.
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                self.redis_url,
                max_connections=16,
                timeout=2.0,
                socket_timeout=2.0,
                socket_connect_timeout=1.0,
            )
            redis_client = redis.asyncio.Redis(connection_pool=pool)
            client = self._clients[loop] = redis_client.register_script(_RESERVE_LUA)
        return client

    async def _reserve(self, tokens: int) -> float:
        with self._lock:
            align, charge, pause = self._align, self._charge, self._pause
            self._align, self._charge, self._pause = {}, 0.0, 0.0
        if self._down_until is not None:  # maybe back, maybe empty (restarted): never fuller
            for kind in KINDS:  # than the local buckets that stood in for it
                left = self.local.balance(kind)
                if left is not None:
                    align[kind] = min(align.get(kind, left), left)
        args: list[Any] = [self._member]
        for kind in KINDS:
            limits = self.local.effective(kind) or (0.0, 0.0)
            take = 1 if kind == "requests" else tokens
            used = charge if kind == "tokens" else 0.0
            args += [limits[0], limits[1], align.get(kind, "none"), used, take]
        args += [pause, MEMBER_TTL_S]
        try:
            wait, workers = await self._client()(keys=self._keys, args=args)
        except BaseException:
            with self._lock:  # not applied: keep it for the next reservation
                self._charge += charge
                self._pause = max(self._pause, pause)
            raise
        self.workers = max(1, int(workers))
        return max(0.0, float(wait))

    def _went_away(self, exc: BaseException) -> None:
        if self._down_until is None:
            self._went_at = time.monotonic()
            self.local.share = 1.0 / self.workers
            logger.warning(
                "rate limiter %r: Redis at %s does not answer (%s); using a local 1/%d share"
                " of the limits until it is back",
                self.key,
                _without_password(self.redis_url),
                type(exc).__name__,
                self.workers,
            )
        self._down_until = time.monotonic() + self.recheck_s


def _without_password(url: str) -> str:
    """`redis://:secret@host:6379/0` as `redis://***@host:6379/0`."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return scheme + sep + rest
