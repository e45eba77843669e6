"""Fixtures of the extraction tests (the adapter itself lives in sim_adapter.py)."""

from sim_adapter import ideal_sim

__all__ = ["ideal_sim"]
