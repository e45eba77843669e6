"""A night over several batch files, in flat memory: rows in input order, every record once,
and a night killed between submitting and collecting resumes its batches from the ledger."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from batch_flow_support import read_rows, recorded_batches, run_night, tickets

from prefect_openai_chat.simulator import Simulator

pytestmark = pytest.mark.usefixtures("isolated_results")

NIGHT = """
import sys
from types import SimpleNamespace
sys.path.insert(0, sys.argv[1])
from batch_flow_support import run_night, tickets
from pathlib import Path
sim = SimpleNamespace(base_url=sys.argv[2], api_key="sk-simulator")
run_night(sim, Path(sys.argv[3]), tickets(12), cache=sys.argv[4],
          batch_options={"enqueued_token_limit": int(sys.argv[5])})
"""


def test_a_night_over_several_batch_files_keeps_input_order_and_ends_each_record_once(
    batch_sim: Simulator, tmp_path: Path
) -> None:
    batch_sim.configure(batch_faults=["shuffle"])  # each output file in another order
    records = tickets(30)
    twin = {**records[3], "ticket_id": "T-TWIN"}  # the same request as record 3: one line
    records.insert(20, twin)
    summary = run_night(
        batch_sim, tmp_path, records, batch_options={"max_requests": 7}, cache=False
    )
    stats = batch_sim.stats()
    assert stats.batches_created == 5 == stats.files_uploaded  # 30 distinct lines, 7 a file
    assert stats.batch_requests == 30 and stats.requests == 0
    assert summary["records"] == 31 == summary["valid"] + summary["quarantined"]
    assert summary["from_cache"] == 1  # the twin: answered once, paid once
    rows = read_rows(tmp_path / "rows.jsonl")
    bad = read_rows(tmp_path / "quarantine.jsonl")
    order = [str(r["ticket_id"]) for r in records]
    written = [r["_key"] for r in rows]
    assert sorted(written + [b["key"] for b in bad]) == sorted(order)
    assert written == [key for key in order if key in set(written)]  # input order
    by_key = {r["_key"]: r for r in rows}
    if "T-TWIN" in by_key and order[3] in by_key:
        twin_row = {k: v for k, v in by_key["T-TWIN"].items() if k != "_key"}
        assert twin_row == {k: v for k, v in by_key[order[3]].items() if k != "_key"}


@pytest.mark.slow  # ~10 s: started early, not last
def test_a_night_killed_between_submit_and_collect_resumes_its_batches_and_pays_once(
    batch_sim: Simulator, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL

    batch_sim.configure(batch_duration_s=600.0)  # the first wave outlives the first process
    cache = tmp_path / "cache" / "records.sqlite"
    limit = 900  # prompt tokens a wave may enqueue: several waves of one batch each
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    here = str(Path(__file__).parent)
    args = [here, batch_sim.base_url, str(tmp_path / "out"), str(cache), str(limit)]
    process = subprocess.Popen([sys.executable, "-c", NIGHT, *args], env=env)
    try:
        deadline = time.monotonic() + 120
        while not recorded_batches(cache):
            assert process.poll() is None, "the first run ended before it waited"
            assert time.monotonic() < deadline, "the first run never recorded its batch"
            time.sleep(0.1)
        time.sleep(1.0)  # it waits for its first wave: nothing more is submitted
        first = recorded_batches(cache)
        assert len(first) == 1 and batch_sim.stats().batches_created == 1
    finally:
        process.kill()
        process.wait(30)
    assert read_rows(tmp_path / "out" / "rows.jsonl") == []

    batch_sim.configure(batch_duration_s=0.3)  # the recorded batch now ends soon
    summary = run_night(
        batch_sim,
        tmp_path / "out",
        tickets(12),
        cache=str(cache),
        batch_options={"enqueued_token_limit": limit},
    )
    stats = batch_sim.stats()
    assert stats.batch_requests == 12 and stats.requests == 0  # each line sent once
    assert stats.files_uploaded == stats.batches_created > 1  # the first one never again
    assert summary["records"] == 12 == summary["batch_records"]
    rows = read_rows(tmp_path / "out" / "rows.jsonl")
    bad = read_rows(tmp_path / "out" / "quarantine.jsonl")
    order = [str(r["ticket_id"]) for r in tickets(12)]
    assert sorted([r["_key"] for r in rows] + [b["key"] for b in bad]) == sorted(order)
    assert [r["_key"] for r in rows] == [k for k in order if k in {r["_key"] for r in rows}]
    assert recorded_batches(cache) == []  # the run's batches are forgotten once it ended


class Unprintable:
    """A field value nobody imagined: its text raises."""

    def __str__(self) -> str:
        raise ValueError("no text for this value")


def test_records_holding_values_nobody_imagined_end_alone_and_the_night_goes_on(
    batch_sim: Simulator, tmp_path: Path
) -> None:
    records = tickets(6)
    records[2] = {**records[2], "subject": Unprintable()}  # its text raises
    records[4] = {**records[4], "body": lambda: None}  # a function: not data at all
    summary = run_night(batch_sim, tmp_path, records, cache=False)
    assert summary["records"] == 6 == summary["valid"] + summary["quarantined"]
    bad = {b["key"]: b["reason"] for b in read_rows(tmp_path / "quarantine.jsonl")}
    assert sorted(bad) == ["3", "5"]  # each its own line, with why
    assert "Unprintable" in bad["3"] and "function" in bad["5"]
    assert len(read_rows(tmp_path / "rows.jsonl")) == 4
