"""Test isolation: forget every process-wide circuit guard, retry budget, limiter and outage."""

from __future__ import annotations

from prefect_openai_chat.resilience import budget as budget_module
from prefect_openai_chat.resilience import circuit as circuit_module
from prefect_openai_chat.resilience import limiter as limiter_module
from prefect_openai_chat.resilience import retrying as retrying_module


def clear_resilience() -> None:
    """Forget every process-wide circuit guard, retry budget, limiter and outage (isolation)."""
    circuit_module._registry.clear()
    budget_module._registry.clear()
    limiter_module._registry.clear()
    retrying_module.outages.clear()
