"""The reliability soak: long-running invariants, in short (the benchmarks run them long)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from registry_support import clear_resilience


@pytest.fixture(autouse=True)
def _fresh_registries() -> Iterator[None]:
    """Each soak starts with no circuit, budget, limiter or outage from an earlier test."""
    clear_resilience()
    yield
    clear_resilience()
