"""A circuit breaker guard per (base URL, model), for threads and asyncio alike.

`CircuitGuard` uses pybreaker's `CircuitBreaker` for its states, listeners and
storage, but not its `call()` (which holds one lock for the whole wrapped call).
A caller asks for a `Permit` before each HTTP attempt and reports the outcome:

    permit = guard.before_call()          # raises CircuitOpenError when open
    try:
        result = send()
    except Exception as exc:
        guard.record_failure(permit, exc)  # only for outage-class errors
        # or guard.record_ignored(permit) for client errors: no count, no reset
        raise
    guard.record_success(permit)

No lock is held across the call. While open, `before_call` fails fast; after the
reset timeout exactly one caller gets a probe permit (a short in-process lock plus,
with Redis, a `SET NX PX` lease shared by every process); the probe's success closes
the circuit, its outage failure opens it again.

State changes reach `add_circuit_listener` callbacks as `CircuitEvent`s (the Prefect
layer turns them into events) and are logged.

Example:
    >>> from prefect_openai_chat.resilience.circuit import CircuitGuard, circuit_key
    >>> guard = CircuitGuard(circuit_key("http://127.0.0.1:8000/v1/", "gpt-4o-mini"), fail_max=2)
    >>> for _ in range(2):
    ...     guard.record_failure(guard.before_call(), ConnectionError("refused"))
    >>> guard.state
    'open'
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pybreaker import (
    STATE_CLOSED,
    STATE_HALF_OPEN,
    STATE_OPEN,
    CircuitBreaker,
    CircuitBreakerListener,
    CircuitBreakerState,
)

from prefect_openai_chat.errors import CircuitOpenError
from prefect_openai_chat.redaction import redact_text
from prefect_openai_chat.resilience.circuit_storage import FailoverStorage
from prefect_openai_chat.resilience.registry import Registry

logger = logging.getLogger("prefect_openai_chat.resilience.circuit")

EventName = Literal["opened", "half-opened", "closed"]
_EVENT_NAMES: dict[str, EventName] = {
    STATE_OPEN: "opened",
    STATE_HALF_OPEN: "half-opened",
    STATE_CLOSED: "closed",
}


@dataclass(frozen=True)
class CircuitEvent:
    """A circuit changed state.

    Attributes:
        name: `"opened"`, `"half-opened"` or `"closed"`.
        key: The circuit key (base URL and model).
        last_error: The outage error that opened it (never a secret), if known.
        at: When, on the guard's clock (unix seconds by default).
        observed: True when another process made the change and this one noticed it.
    """

    name: EventName
    key: str
    last_error: str | None
    at: float
    observed: bool = False


@dataclass(frozen=True)
class CircuitSettings:
    """When a circuit opens and closes: the defaults of `CircuitGuard` and of the block.

    Attributes:
        fail_max: Consecutive outage errors that open the circuit.
        reset_timeout_s: Seconds an open circuit waits before one probe call.
        success_threshold: Successful probes needed to close it again.
    """

    fail_max: int = 5
    reset_timeout_s: float = 30.0
    success_threshold: int = 1


_DEFAULTS = CircuitSettings()


@dataclass(frozen=True)
class Permit:
    """Leave to send one attempt; hand it back with `record_*`."""

    key: str
    probe: bool = False
    token: str | None = None


_listeners: tuple[Callable[[CircuitEvent], None], ...] = ()  # replaced, never changed in place
_listeners_lock = threading.Lock()


def add_circuit_listener(fn: Callable[[CircuitEvent], None]) -> None:
    """Call `fn` on every state change of every guard in this process (idempotent)."""
    global _listeners
    with _listeners_lock:
        if fn not in _listeners:
            _listeners = (*_listeners, fn)


def remove_circuit_listener(fn: Callable[[CircuitEvent], None]) -> None:
    """Stop calling `fn`; unknown listeners are ignored."""
    global _listeners
    with _listeners_lock:
        _listeners = tuple(known for known in _listeners if known != fn)


def _emit(event: CircuitEvent) -> None:
    log = logger.warning if event.name == "opened" else logger.info
    log(
        "circuit %r %s%s (last error: %s)",
        event.key,
        event.name,
        " (observed)" if event.observed else "",
        event.last_error or "none",
    )
    for fn in _listeners:  # a snapshot: the tuple is replaced, never changed
        try:
            fn(event)
        except Exception:  # a listener must never break a call
            logger.exception("circuit listener %r failed", fn)


class _Relay(CircuitBreakerListener):
    """Turns pybreaker's state changes into `CircuitEvent`s."""

    def __init__(self, guard: CircuitGuard) -> None:
        self._guard = guard

    def state_change(
        self,
        cb: CircuitBreaker,
        old_state: CircuitBreakerState | None,
        new_state: CircuitBreakerState,
    ) -> None:
        if old_state is not None and old_state.name == new_state.name:
            return
        guard = self._guard
        _emit(
            CircuitEvent(
                name=_EVENT_NAMES[new_state.name],
                key=guard.key,
                last_error=guard.last_error,
                at=guard._clock(),
                observed=not guard._transitioning,
            )
        )


class CircuitGuard:
    """Guard one (base URL, model) against outages without serialising the calls.

    Args:
        key: The circuit key, see `circuit_key`.
        fail_max: Consecutive outage errors that open the circuit.
        reset_timeout_s: Seconds the circuit stays open before one probe may go.
        success_threshold: Successful probes needed to close it again.
        redis_url: Share the state between processes through this Redis (optional).
        clock: Wall clock in seconds (shared across processes through Redis).
        redis_prefix: Redis key prefix.
        probe_lease_s: How long an unanswered probe blocks others (a lost probe expires).
        redis_recheck_s: While Redis is down, how often to check whether it is back.
        redis_cache_s: How long a state read from Redis is reused (see `FailoverStorage`).
    """

    def __init__(
        self,
        key: str,
        fail_max: int = _DEFAULTS.fail_max,
        reset_timeout_s: float = _DEFAULTS.reset_timeout_s,
        success_threshold: int = _DEFAULTS.success_threshold,
        redis_url: str | None = None,
        clock: Callable[[], float] = time.time,
        *,
        redis_prefix: str = "prefect-openai-chat",
        probe_lease_s: float | None = None,
        redis_recheck_s: float = 5.0,
        redis_cache_s: float = 0.2,
    ) -> None:
        if fail_max < 1 or success_threshold < 1:
            raise ValueError("fail_max and success_threshold must be at least 1")
        if reset_timeout_s < 0:
            raise ValueError(f"reset_timeout_s must be >= 0 seconds, got {reset_timeout_s!r}")
        self.key = key
        self.fail_max = fail_max
        self.reset_timeout_s = float(reset_timeout_s)
        self.success_threshold = success_threshold
        self.probe_lease_s = (
            probe_lease_s if probe_lease_s is not None else max(60.0, self.reset_timeout_s)
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._transitioning = False
        self._last_error: str | None = None
        self.storage = FailoverStorage(
            key, redis_url, redis_prefix, redis_recheck_s, cache_s=redis_cache_s
        )
        self.breaker = CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout_s,
            success_threshold=success_threshold,
            state_storage=self.storage,
            listeners=[_Relay(self)],
            name=key,
        )

    # --- reading the state -----------------------------------------------------------

    @property
    def state(self) -> str:
        """`"closed"`, `"open"` or `"half-open"` (as stored; noticing others' changes)."""
        return self.breaker.state.name

    @property
    def shared(self) -> bool:
        """Whether the state is shared through Redis (so reading it may wait on the network)."""
        return bool(self.storage.redis_url)

    @property
    def last_error(self) -> str | None:
        """The outage error that opened the circuit most recently, if any."""
        return self._last_error or self.storage.open_info()[1]

    # --- the protocol ----------------------------------------------------------------

    def now(self) -> float:
        """The guard's clock (unix seconds unless a test gave it another)."""
        return self._clock()

    def before_call(self) -> Permit:
        """Return a permit to send one attempt, or raise `CircuitOpenError` at once."""
        state = self.breaker.state.name
        if state == STATE_CLOSED:
            return Permit(self.key)
        now = self._clock()
        opened_at, last_error = self.storage.open_info()
        if state == STATE_OPEN and now < opened_at + self.reset_timeout_s:
            raise CircuitOpenError(self.key, opened_at + self.reset_timeout_s, last_error, now)
        token = uuid.uuid4().hex
        if not self.storage.acquire_probe(token, self.probe_lease_s):
            raise CircuitOpenError(self.key, now + self.reset_timeout_s, last_error, now)
        with self._lock:
            if self.breaker.state.name == STATE_OPEN:
                self._transition(self.breaker.half_open)
        return Permit(self.key, probe=True, token=token)

    def record_success(self, permit: Permit) -> None:
        """The attempt got an answer: reset the failure streak; a probe may close the circuit."""
        if permit.probe:
            with self._lock:
                if self.breaker.state.name == STATE_HALF_OPEN:
                    self.storage.increment_success_counter()
                    if self.storage.success_counter >= self.success_threshold:
                        self._transition(self.breaker.close)
            self._release(permit)
        elif self.storage.counter:
            self.storage.reset_counter()

    def record_failure(self, permit: Permit, exc: BaseException) -> None:
        """The attempt failed with an outage-class error: count it (call only for those)."""
        error = describe_error(exc)
        with self._lock:
            state = self.breaker.state.name
            if permit.probe and state == STATE_HALF_OPEN:
                self._open(error)
            elif state == STATE_CLOSED:
                self.storage.increment_counter()
                if self.storage.counter >= self.fail_max:
                    self._open(error)
        self._release(permit)

    def record_ignored(self, permit: Permit) -> None:
        """The attempt failed with a client error (or was cancelled): no count, no reset."""
        self._release(permit)

    def configure(
        self,
        fail_max: int | None = None,
        reset_timeout_s: float | None = None,
        success_threshold: int | None = None,
    ) -> None:
        """Change the thresholds in place (None keeps one); the state stays as it is."""
        if fail_max is not None and fail_max != self.fail_max:
            if fail_max < 1:
                raise ValueError("fail_max must be at least 1")
            self.fail_max = self.breaker.fail_max = fail_max
        if reset_timeout_s is not None and float(reset_timeout_s) != self.reset_timeout_s:
            if reset_timeout_s < 0:
                raise ValueError(f"reset_timeout_s must be >= 0 seconds, got {reset_timeout_s!r}")
            self.reset_timeout_s = float(reset_timeout_s)
            self.breaker.reset_timeout = reset_timeout_s
        if success_threshold is not None and success_threshold != self.success_threshold:
            if success_threshold < 1:
                raise ValueError("success_threshold must be at least 1")
            self.success_threshold = self.breaker.success_threshold = success_threshold

    def reset(self) -> None:
        """Close the circuit and clear its counters (for operators and tests)."""
        with self._lock:
            self.storage.reset_counter()
            if self.breaker.state.name != STATE_CLOSED:
                self._transition(self.breaker.close)

    # --- internals -------------------------------------------------------------------

    def _open(self, error: str) -> None:
        """Open now (lock held): record why and when first, so other processes read both."""
        self._last_error = error
        self.storage.set_opened(self._clock(), error)
        self._transition(self.breaker.open)

    def _transition(self, change: Callable[[], Any]) -> None:
        self._transitioning = True
        try:
            change()
        finally:
            self._transitioning = False

    def _release(self, permit: Permit) -> None:
        if permit.probe and permit.token:
            self.storage.release_probe(permit.token)


def describe_error(exc: BaseException) -> str:
    """A short, secret-free description of an error for logs and events.

    Example:
        >>> describe_error(ConnectionError("refused by sk-abcdefgh"))
        'ConnectionError: refused by ***'
    """
    status = getattr(exc, "status_code", None)
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = redact_text(text)[:200]
    head = f"{type(exc).__name__}" + (f" {status}" if status else "")
    return f"{head}: {text}" if text else head


def circuit_key(base_url: str, model: str) -> str:
    """The circuit key of an endpoint and model: `"<base url>|<model>"`, without credentials.

    Example:
        >>> circuit_key("https://user:pw@api.openai.com/v1/?x=1", "gpt-4o")
        'https://api.openai.com/v1|gpt-4o'
    """
    parts = urlsplit(str(base_url).strip())
    host = (parts.hostname or "").lower()
    if parts.port:
        host = f"{host}:{parts.port}"
    clean = urlunsplit((parts.scheme.lower(), host, parts.path.rstrip("/"), "", ""))
    return f"{clean}|{model}"


_registry: Registry[CircuitGuard] = Registry("circuit guards")


def get_circuit_guard(key: str, **settings: Any) -> CircuitGuard:
    """The process-wide guard for `key` and these `settings` (thresholds, Redis), made on
    first use.

    Callers that give the same key and settings share one guard. A block with other
    thresholds has its own guard, so no block changes another's; with the same Redis they
    still share the endpoint's state there (counts, open or closed), each judging it by its
    own thresholds.

    Example:
        >>> get_circuit_guard("doc|model", fail_max=3) is get_circuit_guard("doc|model", fail_max=3)
        True
        >>> get_circuit_guard("doc|model", fail_max=3) is get_circuit_guard("doc|model", fail_max=4)
        False
    """
    slot = (key, *sorted(settings.items()))
    return _registry.get(slot, lambda: CircuitGuard(key, **settings))
