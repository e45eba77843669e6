"""The Batch API's batches live in the record ledger: a night resumes them from any host.

A worker of another host sees the record ledger (a PostgreSQL URL), not a folder beside
the first worker's files; a night started before the upgrade left a `batch-runs/*.json`
file, which the first resume moves into the ledger.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from batch_flow_support import read_rows, run_night, tickets

from prefect_openai_chat.extraction.batch_api.ledger import BatchLedger, FolderStore
from prefect_openai_chat.extraction.ledger import open_ledger
from prefect_openai_chat.simulator import Simulator

pytestmark = pytest.mark.usefixtures("isolated_results")

NIGHT = """
import sys
from types import SimpleNamespace
sys.path.insert(0, sys.argv[1])
from batch_flow_support import run_night, tickets
from pathlib import Path
sim = SimpleNamespace(base_url=sys.argv[2], api_key="sk-simulator")
run_night(sim, Path(sys.argv[3]), tickets(10), cache=sys.argv[4])
"""


def saved_runs(cache: str) -> dict[str, dict[str, object]]:
    """The Batch API runs saved in the record ledger `cache` (a URL or a SQLite path)."""
    if "://" in cache:
        import psycopg

        with psycopg.connect(cache) as db:
            exists = db.execute("SELECT to_regclass('prefect_openai_chat_ledger_batch_runs')")
            if exists.fetchone()[0] is None:  # type: ignore[index]
                return {}
            rows = db.execute("SELECT run_key, state FROM prefect_openai_chat_ledger_batch_runs")
            found = rows.fetchall()
    else:
        if not Path(cache).exists():
            return {}
        try:
            with sqlite3.connect(cache, timeout=5) as db:
                found = db.execute("SELECT run_key, state FROM batch_runs").fetchall()
        except sqlite3.OperationalError:  # the table is not made yet
            return {}
    return {key: json.loads(state) for key, state in found}


def interrupted_night(
    sim: Simulator, out: Path, cache: str, cwd: Path, home: Path, saved: Callable[[], bool]
) -> None:
    """Start a batch night in another process (own working directory and PREFECT_HOME);
    kill it once `saved()` says its batch is recorded, while it waits for the batch."""
    from prefect.settings import PREFECT_API_URL

    sim.configure(batch_duration_s=600.0)  # the batch outlives the first process
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_HOME": str(home),  # "another host": its own default ledger folder
    }
    here = str(Path(__file__).parent)
    process = subprocess.Popen(
        [sys.executable, "-c", NIGHT, here, sim.base_url, str(out), cache], env=env, cwd=cwd
    )
    try:
        deadline = time.monotonic() + 120
        while not saved():
            assert process.poll() is None, "the first run ended before it waited"
            assert time.monotonic() < deadline, "the first run never recorded its batch"
            time.sleep(0.2)
        assert sim.stats().batches_created == 1
    finally:
        process.kill()
        process.wait(30)
    assert read_rows(out / "rows.jsonl") == []
    sim.configure(batch_duration_s=0.3)  # the same batch now ends soon


def test_a_night_resumes_its_batches_from_a_postgresql_ledger_in_another_directory(
    batch_sim: Simulator,
    tmp_path: Path,
    postgres_ledger_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = tmp_path / "host-a", tmp_path / "host-b"
    first.mkdir()
    second.mkdir()

    def recorded() -> bool:
        runs = saved_runs(postgres_ledger_url)
        return any(run["rounds"] for run in runs.values())

    interrupted_night(
        batch_sim, first / "out", postgres_ledger_url, first, first / "home", recorded
    )
    monkeypatch.chdir(second)
    summary = run_night(batch_sim, second / "out", tickets(10), cache=postgres_ledger_url)
    stats = batch_sim.stats()
    assert (stats.files_uploaded, stats.batches_created, stats.batch_requests) == (1, 1, 10)
    assert summary["records"] == 10 == summary["batch_records"] and stats.requests == 0
    assert len(read_rows(second / "out" / "rows.jsonl")) == summary["valid"]
    assert saved_runs(postgres_ledger_url) == {}  # forgotten once every record ended
    assert not list(tmp_path.rglob("batch-runs"))  # no folder on either "host"


def test_a_night_started_before_the_upgrade_is_moved_into_the_ledger_and_resumed(
    batch_sim: Simulator, tmp_path: Path
) -> None:
    cache = tmp_path / "cache" / "records.sqlite"
    interrupted_night(
        batch_sim,
        tmp_path / "out",
        str(cache),
        tmp_path,
        tmp_path / "home",
        lambda: any(run["rounds"] for run in saved_runs(str(cache)).values()),
    )
    # what the previous version left: the run's state in a file of the batch-runs folder
    ((key, state),) = saved_runs(str(cache)).items()
    ledger = open_ledger(str(cache))
    assert ledger is not None
    ledger.remove_batch_run(key)
    ledger.close()
    legacy = FolderStore(cache.parent / "batch-runs")
    legacy.save(key, json.dumps(state))

    summary = run_night(batch_sim, tmp_path / "out", tickets(10), cache=str(cache))
    stats = batch_sim.stats()
    assert (stats.batches_created, stats.batch_requests, stats.requests) == (1, 10, 0)
    assert summary["records"] == 10 == summary["batch_records"]
    assert not legacy.path(key).exists() and saved_runs(str(cache)) == {}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_both_backends_keep_a_run_until_it_is_removed(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    setting = (
        str(request.getfixturevalue("postgres_ledger_url"))
        if backend == "postgres"
        else str(tmp_path / "records.sqlite")
    )
    ledger = open_ledger(setting)
    assert ledger is not None
    try:
        assert ledger.load_batch_run("run-1") is None
        batches = BatchLedger.open_in(ledger, "run-1")
        batches.add(0, ("a", "b", 2), "file-1", "batch_1")
        again = open_ledger(setting)  # another worker's connection
        assert again is not None
        resumed = BatchLedger.open_in(again, "run-1")
        assert resumed.run_name == batches.run_name
        assert resumed.batches(0)[0]["batch_id"] == "batch_1"
        again.close()
        batches.remove()
        assert ledger.load_batch_run("run-1") is None
    finally:
        ledger.close()


def test_a_legacy_file_is_read_once_then_removed(tmp_path: Path) -> None:
    legacy = BatchLedger.open(tmp_path / "batch-runs", "run-2")  # the old way: a file
    legacy.add(0, ("a", "a", 1), "file-1", "batch_1")
    ledger = open_ledger(str(tmp_path / "records.sqlite"))
    assert ledger is not None
    try:
        moved = BatchLedger.open_in(ledger, "run-2", legacy=tmp_path / "batch-runs")
        assert moved.run_name == legacy.run_name and moved.batches(0)[0]["batch_id"] == "batch_1"
        assert not (tmp_path / "batch-runs" / "batch-run-run-2.json").exists()
        assert ledger.load_batch_run("run-2") is not None
    finally:
        ledger.close()
