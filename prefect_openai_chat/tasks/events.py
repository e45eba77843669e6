"""Circuit state changes as Prefect events, for the UI and automations.

Event names: `prefect-openai-chat.circuit.opened`, `.half-opened`, `.closed`; the
resource is the circuit (`prefect-openai-chat.circuit.<key>`), the payload holds
the key and the last error. A Prefect automation can match them to notify a team
or pause a deployment.
"""

from __future__ import annotations

import logging
import threading

from prefect.events import emit_event

from prefect_openai_chat.redaction import redact_text
from prefect_openai_chat.resilience import CircuitEvent, add_circuit_listener

logger = logging.getLogger("prefect_openai_chat.circuit")
_installed = False
_lock = threading.Lock()
trips = 0  # circuits opened in this process (for run summaries)


def event_name(event: CircuitEvent) -> str:
    """The Prefect event name for a circuit state change."""
    return f"prefect-openai-chat.circuit.{event.name}"


def on_circuit_event(event: CircuitEvent) -> None:
    """Emit the change as a Prefect event (once: not when merely observed).

    The change is logged once, by `resilience.circuit`, not here again.
    """
    global trips
    last_error = redact_text(event.last_error) if event.last_error else None  # maybe from Redis
    if event.observed:
        return  # another process made the change and emitted the event
    if event.name == "opened":
        trips += 1
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
