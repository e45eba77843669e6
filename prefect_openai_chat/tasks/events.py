"""Circuit state changes as Prefect events, for the UI and automations.

Event names: `prefect-openai-chat.circuit.opened`, `.half-opened`, `.closed`; the
resource is the circuit (`prefect-openai-chat.circuit.<key>`), the payload holds
the key and the last error. A Prefect automation can match them to notify a team
or pause a deployment.
"""

from __future__ import annotations

import contextvars
import logging
import threading

from prefect.events import emit_event

from prefect_openai_chat.redaction import bounded_text
from prefect_openai_chat.resilience import CircuitEvent, add_circuit_listener

logger = logging.getLogger("prefect_openai_chat.circuit")
EVENT_TEXT_LIMIT = 4 * 1024  # bytes of an error's text kept in an event's payload
_installed = False
_lock = threading.Lock()


class TripCounter:
    """Circuits opened by the calls of one run (its context and the tasks that copy it)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._token: contextvars.Token[tuple[TripCounter, ...]] | None = None

    def add(self) -> None:
        with self._lock:
            self.count += 1

    def stop(self) -> int:
        """Stop counting (in the context that started it); the count so far."""
        if self._token is not None:
            _counting.reset(self._token)
            self._token = None
        return self.count


# The counters of the runs the current context belongs to (a flow's tasks copy its context).
_counting: contextvars.ContextVar[tuple[TripCounter, ...]] = contextvars.ContextVar(
    "prefect_openai_chat_trip_counters", default=()
)


def count_trips() -> TripCounter:
    """Count the circuits the calls made from this context open, until `stop()`.

    Two flows in one process count apart; tasks on other processes (a process pool,
    Dask) are not seen.

    Example:
        >>> counter = count_trips()
        >>> counter.stop()
        0
    """
    counter = TripCounter()
    counter._token = _counting.set((*_counting.get(), counter))
    return counter


def event_name(event: CircuitEvent) -> str:
    """The Prefect event name for a circuit state change."""
    return f"prefect-openai-chat.circuit.{event.name}"


def on_circuit_event(event: CircuitEvent) -> None:
    """Emit the change as a Prefect event (once: not when merely observed).

    The change is logged once, by `resilience.circuit`, not here again.
    """
    # maybe from Redis: masked and capped again
    last_error = bounded_text(event.last_error, EVENT_TEXT_LIMIT, "the error") or None
    if event.observed:
        return  # another process made the change and emitted the event
    if event.name == "opened":
        for counter in _counting.get():  # the listener runs in the context of the failing call
            counter.add()
    try:
        emit_event(
            event=event_name(event),
            resource={
                "prefect.resource.id": f"prefect-openai-chat.circuit.{event.key}",
                "prefect.resource.name": event.key,
            },
            payload={"key": event.key, "state": event.name, "last_error": last_error},
        )
    except Exception:
        logger.debug("could not emit circuit event", exc_info=True)


def install_circuit_events() -> None:
    """Install the listener once per process."""
    global _installed
    with _lock:
        if not _installed:
            add_circuit_listener(on_circuit_event)
            _installed = True
