"""`extract_records(via="batch")` on the simulator: every record once, at the batch price."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from batch_flow_support import read_rows, run_night, tickets

from prefect_openai_chat.simulator import Simulator

pytestmark = pytest.mark.usefixtures("isolated_results")


def ended_once(folder: Path, records: list[dict]) -> tuple[list[dict], list[dict]]:
    rows = read_rows(folder / "rows.jsonl")
    bad = read_rows(folder / "quarantine.jsonl")
    keys = sorted([r["_key"] for r in rows] + [b["key"] for b in bad])
    assert keys == sorted(str(r["ticket_id"]) for r in records)
    return rows, bad


def test_a_night_via_batch_costs_half_and_a_rerun_pays_nothing(
    batch_sim: Simulator, tmp_path: Path
) -> None:
    records = tickets(20)
    summary = run_night(batch_sim, tmp_path / "first", records)
    rows, _ = ended_once(tmp_path / "first", records)
    assert summary["records"] == 20 == summary["valid"] + summary["quarantined"]
    assert summary["batch_records"] == 20 and len(rows) == summary["valid"]
    stats = batch_sim.stats()
    assert (stats.batches_created, stats.batch_requests) == (1, 20)
    assert summary["cost_usd"] == pytest.approx(summary["online_cost_usd"] / 2, rel=0.02)

    again = run_night(batch_sim, tmp_path / "again", records)
    ended_once(tmp_path / "again", records)
    stats = batch_sim.stats()
    assert (stats.batches_created, stats.batch_requests, stats.requests) == (1, 20, 0)
    assert again["from_cache"] == 20 and again["cost_usd"] == 0
    assert not list((tmp_path).rglob("batch-run-*.json"))  # the ledger is gone once done


def test_a_later_run_without_the_record_cache_asks_again(
    batch_sim: Simulator, tmp_path: Path
) -> None:
    records = tickets(5)
    for name in ("one", "two"):
        run_night(batch_sim, tmp_path / name, records, cache=False)
        ended_once(tmp_path / name, records)
    assert batch_sim.stats().batches_created == 2  # a finished run's batch is never reused


def test_shuffled_output_and_failed_lines_are_matched_and_reasked_online(
    batch_sim: Simulator, tmp_path: Path
) -> None:
    batch_sim.configure(batch_faults=["shuffle", "line-errors"])
    records = tickets(40)
    summary = run_night(batch_sim, tmp_path, records, batch_options={"reask": "online"})
    rows, _ = ended_once(tmp_path, records)
    stats = batch_sim.stats()
    assert stats.batches_created == 1 and stats.requests >= 4  # 4 failed lines, online
    by_key = {row["_key"]: row for row in rows}
    for record in records:  # each row holds its own ticket's order id, whatever the order
        order = re.search(r"ORD-\d{5}", f"{record['subject']} {record['body']}")
        assert by_key[str(record["ticket_id"])]["order_id"] == (order and order.group())
    assert summary["records"] == 40


@pytest.mark.parametrize("unfinished", ["resubmit", "quarantine"])
def test_an_expired_batch_keeps_what_it_answered(
    batch_sim: Simulator, tmp_path: Path, unfinished: str
) -> None:
    batch_sim.configure(batch_faults=["expire"])
    records = tickets(20)
    summary = run_night(
        batch_sim,
        tmp_path,
        records,
        batch_options={"unfinished": unfinished, "max_rounds": 2},
    )
    rows, bad = ended_once(tmp_path, records)
    stats = batch_sim.stats()
    if unfinished == "resubmit":
        assert stats.batches_created == 2  # the unanswered lines, once more
        assert stats.requests > 0  # what the second (also expiring) batch left: online
        assert summary["quarantined"] == len(bad) and not any("expired" in b["reason"] for b in bad)
    else:
        assert stats.batches_created == 1 and stats.requests == 0
        assert bad and all("expired" in b["reason"] for b in bad)
        assert len(rows) == stats.batch_requests


def test_a_batch_that_fails_validation_quarantines_its_records_with_the_reason(
    batch_sim: Simulator, tmp_path: Path
) -> None:
    batch_sim.configure(batch_faults=["validation-failed"])
    records = tickets(5)
    summary = run_night(batch_sim, tmp_path, records)
    _, bad = ended_once(tmp_path, records)
    assert summary["quarantined"] == 5
    assert all("failed validation" in b["reason"] for b in bad)
    assert "line 1: invalid_request" in " ".join(b["reason"] for b in bad)


def test_waves_keep_within_the_enqueued_token_limit(batch_sim: Simulator, tmp_path: Path) -> None:
    limit = 6_000  # about 15 ticket requests
    batch_sim.configure(batch_enqueued_token_limit=limit)
    records = tickets(30)
    summary = run_night(
        batch_sim,
        tmp_path,
        records,
        batch_options={"enqueued_token_limit": limit, "max_requests": 12},
    )
    ended_once(tmp_path, records)
    stats = batch_sim.stats()
    assert stats.batches_created >= 3 and stats.batch_requests == 30
    assert summary["batch_records"] == 30 and stats.requests == 0


@pytest.mark.parametrize("reask", ["online", "batch", None])
def test_invalid_answers_are_reasked_online_or_in_a_follow_up_batch(
    batch_sim: Simulator, tmp_path: Path, reask: str | None
) -> None:
    batch_sim.configure(fault_rates={"missing-fields": 0.5})
    records = tickets(20)
    options = {"reask": reask} if reask else {}  # none given: the default, follow-up batches
    summary = run_night(batch_sim, tmp_path, records, batch_options=options)
    ended_once(tmp_path, records)
    stats = batch_sim.stats()
    assert summary["reprompted"] > 0 and summary["valid"] == 20
    if reask == "online":
        assert stats.batches_created == 1 and stats.requests == summary["reprompted"]
    else:
        assert stats.batches_created >= 2 and stats.requests == 0
