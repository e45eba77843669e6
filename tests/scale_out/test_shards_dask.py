"""Shards on Dask: `extract_records` with a `DaskTaskRunner`, two worker processes.

For teams without a work pool: the same fan-out, the shards as tasks on a Dask
LocalCluster of two processes, each shard a subflow run in its worker process. Both
processes share one SQLite record cache on this host.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dask_support import DaskCluster
from model_support import fast_model
from scale_out_support import PROMPT, SCHEMA, LoggedSimulator, read_jsonl, write_records

from prefect_openai_chat.flows import extract_records

pytestmark = pytest.mark.slow  # shards on the session's Dask cluster

RECORDS = 120


@pytest.fixture(autouse=True)
def _harness(isolated_results: None) -> None:
    """The session's Prefect test API; task results and the record cache per test."""


@pytest.fixture
def sim() -> Iterator[LoggedSimulator]:
    with LoggedSimulator(profile="ideal", seed=9, ttft_s=0.02) as simulator:
        yield simulator


def test_shards_run_in_two_dask_processes(
    sim: LoggedSimulator, tmp_path: Path, dask_cluster: DaskCluster
) -> None:
    from prefect_dask.task_runners import DaskTaskRunner

    # the session's cluster of two worker processes, reporting to the session's Prefect API
    runner = DaskTaskRunner(address=dask_cluster.address)
    summary = run_on(extract_records.with_options(task_runner=runner), sim, tmp_path)
    assert (summary["records"], summary["valid"], summary["shards"]) == (RECORDS, RECORDS, 4)
    rows = read_jsonl(tmp_path / "out" / "rows.jsonl")
    assert [row["_key"] for row in rows] == [f"T{n:05d}" for n in range(1, RECORDS + 1)]
    paid = sim.log.paid()
    assert sorted(paid) == list(range(1, RECORDS + 1)), "every record was paid for"
    assert not sim.log.paid_twice(), "no request was paid twice"
    # the shards ran in the cluster's processes (both of them), not in this one
    pids = _client_pids(sim)
    assert pids == dask_cluster.worker_pids and os.getpid() not in pids, pids


def run_on(on_dask: Any, sim: LoggedSimulator, tmp_path: Path) -> dict[str, Any]:
    source = write_records(tmp_path / "in.jsonl", RECORDS)
    summary: dict[str, Any] = on_dask(
        source=str(source),
        schema=SCHEMA,
        chat_model=fast_model(sim.base_url, sim.api_key),
        prompt=PROMPT,
        output=str(tmp_path / "out" / "rows.jsonl"),
        quarantine=str(tmp_path / "out" / "quarantine.jsonl"),
        key_field="ticket_id",
        batch_size=20,
        concurrency=8,
        cache=str(tmp_path / "cache.sqlite"),
        shards=4,
    )
    return summary


def _client_pids(sim: LoggedSimulator) -> set[int]:
    return {r.client_pid for r in sim.log.requests if r.client_pid is not None}
