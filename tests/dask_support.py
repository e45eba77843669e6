"""The session's Dask cluster as the tests see it (the `dask_cluster` fixture, tests/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DaskCluster:
    """A running Dask cluster: where its scheduler listens, and its workers' processes."""

    address: str
    worker_pids: frozenset[int]
