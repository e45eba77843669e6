"""Test isolation: forget every process-wide circuit guard, retry budget, limiter and outage."""

from __future__ import annotations

from prefect_openai_chat import reset_process_state


def clear_resilience() -> None:
    """Forget every process-wide circuit guard, retry budget, limiter, outage and client."""
    reset_process_state()
