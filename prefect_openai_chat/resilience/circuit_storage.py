"""Where a circuit's state lives: Redis while it answers, this process's memory while not.

`FailoverStorage` is a pybreaker `CircuitBreakerStorage`. With a Redis URL it
delegates to pybreaker's `CircuitRedisStorage` (sync client, `decode_responses=False`)
so every process shares one state; when Redis stops answering it logs one warning,
switches to a `CircuitMemoryStorage`, and checks every `recheck_s` seconds whether
Redis is back (then logs once more and shares state again). It also keeps what
pybreaker's storage lacks: the open time on the guard's clock, the last error, and
the half-open probe lease (`SET NX PX` in Redis, so exactly one process probes).

Example:
    >>> from prefect_openai_chat.resilience.circuit_storage import FailoverStorage
    >>> s = FailoverStorage("https://api.openai.com/v1|gpt-4o-mini")
    >>> (s.state, s.backend)
    ('closed', 'memory')
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from pybreaker import (
    STATE_CLOSED,
    STATE_OPEN,
    CircuitBreakerStorage,
    CircuitMemoryStorage,
    CircuitRedisStorage,
)

logger = logging.getLogger("prefect_openai_chat.resilience.circuit")

T = TypeVar("T")

# pybreaker's Redis storage logs a traceback for every failed command; we log once instead.
_SILENT = logging.Logger("prefect_openai_chat.resilience.pybreaker_redis", logging.CRITICAL + 10)
_SILENT.propagate = False
_SILENT.addHandler(logging.NullHandler())

_RELEASE_LUA = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


class _QuietRedisStorage(CircuitRedisStorage):
    logger = _SILENT


class _ReportingClient:
    """Forwards to a redis client and reports each Redis error before re-raising it."""

    def __init__(self, client: Any, on_error: Callable[[BaseException], None]) -> None:
        self._client = client
        self._on_error = on_error

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except Exception as exc:  # redis.RedisError and socket errors
                self._on_error(exc)
                raise

        return call


class FailoverStorage(CircuitBreakerStorage):
    """pybreaker storage backed by Redis when reachable, else by process memory.

    Args:
        key: The circuit key (base URL and model).
        redis_url: e.g. `redis://127.0.0.1:6379/0`; None keeps state in this process only.
        prefix: Redis key prefix (use a distinct one per test or deployment).
        recheck_s: While Redis is down, how often to check whether it is back.
        monotonic: A monotonic clock for leases and re-checks.
        cache_s: How long a state, failure count or open record read from Redis is reused
            (writes from this process update it at once), so that a busy process makes a few
            Redis reads per second per circuit instead of one or two per attempt, and a slow
            Redis stalls the event loop that often at most. 0 reads Redis every time.
    """

    def __init__(
        self,
        key: str,
        redis_url: str | None = None,
        prefix: str = "prefect-openai-chat",
        recheck_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        cache_s: float = 0.2,
    ) -> None:
        super().__init__("failover")
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Any]] = {}
        self.key = key
        self.redis_url = redis_url
        self.recheck_s = recheck_s
        self._monotonic = monotonic
        self._memory = CircuitMemoryStorage(STATE_CLOSED)
        self._mem_opened_at_s = 0.0
        self._mem_last_error: str | None = None
        self._mem_probe: tuple[str, float] | None = None
        self._opened_alone = False  # opened while Redis was away: tell Redis when it is back
        self._ns = f"{prefix}:{key}"
        self._client: Any = None
        self._redis: CircuitRedisStorage | None = None
        self._down_until: float | None = None  # None: up (or no Redis); else next re-check
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()  # one cached read at a time (`_cached`)
        if redis_url:
            self._client = self._make_client(redis_url)
            self._connect()

    # --- backend selection ------------------------------------------------------------

    def _make_client(self, url: str) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis.from_url(
            url,
            decode_responses=False,
            socket_connect_timeout=0.25,
            socket_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
        return _ReportingClient(client, self._on_redis_error)

    def _connect(self) -> None:
        try:
            self._redis = _QuietRedisStorage(
                STATE_CLOSED, self._client, namespace=self._ns, fallback_circuit_state=STATE_CLOSED
            )
        except Exception:
            self._redis = None  # _on_redis_error already switched to memory and warned

    def _on_redis_error(self, exc: BaseException) -> None:
        with self._lock:
            was_up = self._down_until is None
            self._down_until = self._monotonic() + self.recheck_s
        if was_up:
            logger.warning(
                "Redis at %s is unreachable (%s); circuit %r keeps its state in this process"
                " until Redis is back (checking every %g s)",
                _safe_url(self.redis_url),
                type(exc).__name__,
                self.key,
                self.recheck_s,
            )

    def _use_redis(self) -> bool:
        """True when commands should go to Redis now (re-checks a down Redis when due)."""
        if self._client is None:
            return False
        down_until = self._down_until
        if down_until is None:
            return self._redis is not None or self._reconnect()
        if self._monotonic() < down_until:
            return False
        with self._lock:
            if self._down_until is None or self._monotonic() < self._down_until:
                return self._down_until is None
            self._down_until = self._monotonic() + self.recheck_s  # one re-check at a time
        return self._reconnect()

    def _reconnect(self) -> bool:
        try:
            self._client.ping()
        except Exception:
            return False
        self._connect()
        if self._redis is None:
            return False
        with self._lock:
            self._down_until = None
        self.forget_cached()
        logger.info(
            "Redis at %s is reachable again; circuit %r shares its state again",
            _safe_url(self.redis_url),
            self.key,
        )
        self._share_opened_alone()
        return True

    def _share_opened_alone(self) -> None:
        """Write to Redis an opening this process saw while Redis was away.

        Without this, the first read after Redis is back (a restarted, empty Redis, or
        one that other processes kept closed) would close the circuit here and the
        endpoint would be hammered again until `fail_max` more failures. An open or
        half-open state in Redis is left alone: it is as cautious, and newer.
        """
        if not self._opened_alone or self._memory.state != STATE_OPEN or self._redis is None:
            return
        self._opened_alone = False
        try:
            if self._redis.state != STATE_CLOSED:
                return
            self._client.mset(
                {
                    self._k("opened_at_s"): repr(self._mem_opened_at_s),
                    self._k("last_error"): self._mem_last_error or "",
                }
            )
            opened_at = self._memory.opened_at
            if opened_at is not None:
                self._redis.opened_at = opened_at
            self._redis.state = STATE_OPEN
        except Exception:
            return  # Redis went away again: already reported, memory still holds it
        logger.warning(
            "circuit %r opened while Redis was away; Redis at %s now says so to every process",
            self.key,
            _safe_url(self.redis_url),
        )

    @property
    def backend(self) -> str:
        """`"redis"` or `"memory"`: where the state is read from right now."""
        return "redis" if self._use_redis() else "memory"

    def _pick(self, on_redis: Callable[[CircuitRedisStorage], T], on_memory: Callable[[], T]) -> T:
        redis_storage = self._redis
        if redis_storage is not None and self._use_redis():
            result = on_redis(redis_storage)
            if self._down_until is None:
                return result
        return on_memory()

    def _cached(self, name: str, read: Callable[[], T]) -> T:
        """`read()`, reused for `cache_s` seconds; one read at a time (the calls wait in
        worker threads: those that find the value stale together make one Redis read)."""
        if self.cache_s <= 0 or self._client is None:  # memory only: nothing to save
            return read()
        hit = self._fresh(name)
        if hit is not None:
            return hit[1]  # type: ignore[no-any-return]
        with self._read_lock:
            hit = self._fresh(name)  # read by the thread this one waited for
            if hit is not None:
                return hit[1]  # type: ignore[no-any-return]
            now = self._monotonic()
            value = read()
            self._cache[name] = (now, value)
            return value

    def _fresh(self, name: str) -> tuple[float, Any] | None:
        hit = self._cache.get(name)
        return hit if hit is not None and self._monotonic() - hit[0] < self.cache_s else None

    def _remember(self, name: str, value: Any) -> None:
        self._cache[name] = (self._monotonic(), value)

    def forget_cached(self) -> None:
        """Read Redis afresh on the next access (after a change made here, and in tests)."""
        self._cache.clear()

    # --- pybreaker's storage interface ------------------------------------------------

    @property
    def state(self) -> str:
        return self._cached(
            "state", lambda: self._pick(lambda r: r.state, lambda: self._memory.state)
        )

    @state.setter
    def state(self, state: str) -> None:
        self._memory.state = state
        if self._client is not None and not self._use_redis():
            self._opened_alone = state == STATE_OPEN
        self._pick(lambda r: setattr(r, "state", state), lambda: None)
        self._remember("state", state)
        self._cache.pop("open_info", None)

    def increment_counter(self) -> None:
        self._cache.pop("counter", None)  # the next read must see the count it reached
        self._pick(lambda r: r.increment_counter(), self._memory.increment_counter)

    def reset_counter(self) -> None:
        self._memory.reset_counter()
        self._pick(lambda r: r.reset_counter(), lambda: None)
        self._remember("counter", 0)

    def increment_success_counter(self) -> None:
        self._pick(lambda r: r.increment_success_counter(), self._memory.increment_success_counter)

    def reset_success_counter(self) -> None:
        self._memory.reset_success_counter()
        self._pick(lambda r: r.reset_success_counter(), lambda: None)

    @property
    def counter(self) -> int:
        return self._cached(
            "counter", lambda: self._pick(lambda r: r.counter, lambda: self._memory.counter)
        )

    @property
    def success_counter(self) -> int:
        return self._pick(lambda r: r.success_counter, lambda: self._memory.success_counter)

    @property
    def opened_at(self) -> datetime | None:
        return self._pick(lambda r: r.opened_at, lambda: self._memory.opened_at)

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        self._memory.opened_at = value
        self._pick(lambda r: setattr(r, "opened_at", value), lambda: None)

    # --- what pybreaker does not keep -------------------------------------------------

    def _k(self, name: str) -> str:
        return f"{self._ns}:pybreaker:{name}"

    def set_opened(self, at: float, last_error: str) -> None:
        """Record when (on the guard's clock) and why the circuit opened."""
        self._mem_opened_at_s, self._mem_last_error = at, last_error
        self._remember("open_info", (at, last_error))
        if self._use_redis():
            with contextlib.suppress(Exception):  # already reported; memory holds it
                self._client.mset(
                    {self._k("opened_at_s"): repr(at), self._k("last_error"): last_error}
                )

    def open_info(self) -> tuple[float, str | None]:
        """(opened at, last error) of the current or latest opening."""
        return self._cached("open_info", self._read_open_info)

    def _read_open_info(self) -> tuple[float, str | None]:
        if self._use_redis():
            try:
                at, err = self._client.mget(self._k("opened_at_s"), self._k("last_error"))
                return (float(at) if at else 0.0, err.decode("utf-8", "replace") if err else None)
            except Exception:
                pass
        return self._mem_opened_at_s, self._mem_last_error

    def acquire_probe(self, token: str, lease_s: float) -> bool:
        """Take the half-open probe lease for `lease_s` seconds; False if someone holds it."""
        if self._use_redis():
            try:
                ok = self._client.set(
                    self._k("probe"), token, nx=True, px=max(1, int(lease_s * 1000))
                )
                return bool(ok)
            except Exception:
                pass
        now = self._monotonic()
        with self._lock:
            if self._mem_probe is not None and self._mem_probe[1] > now:
                return False
            self._mem_probe = (token, now + lease_s)
            return True

    def release_probe(self, token: str) -> None:
        """Give the probe lease back if `token` still holds it."""
        with self._lock:
            if self._mem_probe is not None and self._mem_probe[0] == token:
                self._mem_probe = None
        if self._use_redis():
            with contextlib.suppress(Exception):  # the lease expires by itself
                self._client.eval(_RELEASE_LUA, 1, self._k("probe"), token)


def _safe_url(url: str | None) -> str:
    """A Redis URL without its password."""
    if not url or "@" not in url:
        return str(url)
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
