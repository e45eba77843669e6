"""`extract_records(via="batch")` on the simulator: every record once, at the batch price."""

from __future__ import annotations

from pathlib import Path

import pytest
from batch_flow_support import read_rows, run_night, tickets

from prefect_openai_chat.simulator import Simulator

pytestmark = pytest.mark.usefixtures("isolated_results")


def test_a_night_via_batch_ends_every_record_once(batch_sim: Simulator, tmp_path: Path) -> None:
    records = tickets(30)
    summary = run_night(batch_sim, tmp_path, records)
    rows = read_rows(tmp_path / "rows.jsonl")
    bad = read_rows(tmp_path / "quarantine.jsonl")
    keys = sorted([r["_key"] for r in rows] + [b["key"] for b in bad])
    assert keys == sorted(str(r["ticket_id"]) for r in records)
    assert summary["records"] == 30 == summary["valid"] + summary["quarantined"]
    assert summary["batch_records"] == 30
    stats = batch_sim.stats()
    assert stats.batches_created == 1
    assert stats.batch_requests == 30
    assert summary["cost_usd"] == pytest.approx(summary["online_cost_usd"] / 2, rel=0.02)
