"""A Batch API night in shards: every record ends once, and no request is paid twice.

Two records with the same prompt text are one request (one cache key). When they fall
in two shards' line ranges, each shard would send it; the shards claim their requests
in the record ledger first, so one shard sends it and the other reads its outcome.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from batch_flow_support import SCHEMA, batch_model, read_rows, tickets

from prefect_openai_chat import ExtractionSpec, RunOptions
from prefect_openai_chat.examples.tickets import TICKET_PROMPT
from prefect_openai_chat.extraction.ledger import SqliteLedger
from prefect_openai_chat.flows import extract_records
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.tasks import extraction_key

pytestmark = pytest.mark.usefixtures("isolated_results")

SPEC = ExtractionSpec(schema=SCHEMA, prompt=TICKET_PROMPT, key_field="ticket_id")


def source_with_repeats(path: Path) -> list[dict[str, Any]]:
    """Ten tickets, then three of them again under new ids (the same request, the other shard)."""
    records = tickets(10)
    repeats = [{**records[n], "ticket_id": f"again-{n}"} for n in (0, 3, 7)]
    every = records + repeats
    path.write_text("".join(json.dumps(r) + "\n" for r in every), encoding="utf-8")
    return every


def run_sharded(sim: Simulator, source: Path, out: Path, cache: Path) -> dict[str, Any]:
    return extract_records(
        source=str(source),
        output=str(out / "rows.jsonl"),
        quarantine=str(out / "quarantine.jsonl"),
        spec=SPEC,
        chat_model=batch_model(sim),
        run=RunOptions(
            via="batch", shards=2, cache=str(cache), batch_api={"poll_interval_s": 0.05}
        ),
    )


def ended_once(out: Path, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows, bad = read_rows(out / "rows.jsonl"), read_rows(out / "quarantine.jsonl")
    assert not bad
    assert [row["_key"] for row in rows] == [str(r["ticket_id"]) for r in records]
    return rows


def test_shards_through_the_batch_api_pay_each_request_once_and_a_rerun_pays_nothing(
    batch_sim: Simulator, tmp_path: Path
) -> None:
    records = source_with_repeats(tmp_path / "in.jsonl")
    summary = run_sharded(batch_sim, tmp_path / "in.jsonl", tmp_path / "out", tmp_path / "l.db")
    rows = ended_once(tmp_path / "out", records)
    by_key = {row["_key"]: row for row in rows}
    for n in (0, 3, 7):  # a repeat's answer is its twin's, read from the ledger
        twin, again = by_key[str(records[n]["ticket_id"])], by_key[f"again-{n}"]
        assert {k: v for k, v in twin.items() if k != "_key"} == {
            k: v for k, v in again.items() if k != "_key"
        }
    stats = batch_sim.stats()
    assert stats.batches_created == 2  # one per shard
    assert (stats.batch_requests, stats.requests) == (10, 0)  # ten requests, each sent once
    assert summary["records"] == summary["valid"] == 13 and summary["shards"] == 2
    assert summary["batch_records"] == 10 and summary["from_cache"] == 3
    assert summary["cost_usd"] == pytest.approx(summary["online_cost_usd"] / 2, rel=0.02)

    again = run_sharded(batch_sim, tmp_path / "in.jsonl", tmp_path / "again", tmp_path / "l.db")
    ended_once(tmp_path / "again", records)
    stats = batch_sim.stats()
    assert (stats.batches_created, stats.batch_requests, stats.requests) == (2, 10, 0)
    assert again["from_cache"] == 13 and again["cost_usd"] == 0


def test_a_request_whose_holder_gives_it_up_is_sent_online_by_the_shard_waiting_for_it(
    batch_sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another holder of a request (a shard of another run, say) gives it up once both
    shards have sent their batches: the shard that waits for it takes it over and sends it
    online; nothing is lost, nothing paid twice."""
    records = source_with_repeats(tmp_path / "in.jsonl")
    key = extraction_key(batch_model(batch_sim), SPEC, SPEC.render(records[11]))  # again-3
    ghost = "batch-shard:another-run"
    ledger = SqliteLedger(tmp_path / "l.db")
    assert ledger.claim_many([key], owner=ghost, lease_s=600) == {key}

    def give_up_once_both_shards_sent() -> None:
        deadline = time.monotonic() + 120
        while batch_sim.stats().batches_created < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        ledger.release([key], ghost)

    holder = threading.Thread(target=give_up_once_both_shards_sent)
    holder.start()
    try:
        with caplog.at_level(logging.INFO):
            summary = run_sharded(
                batch_sim, tmp_path / "in.jsonl", tmp_path / "out", tmp_path / "l.db"
            )
    finally:
        holder.join()
        ledger.close()
    ended_once(tmp_path / "out", records)
    stats = batch_sim.stats()
    # ticket 4 and its repeat are one request: held by the other run, then sent online once
    assert (stats.batch_requests, stats.requests) == (9, 1)
    assert summary["valid"] == 13 and summary["batch_records"] == 9
    assert summary["from_cache"] == 3  # two repeats, and the twin of the one sent online
    said = caplog.text
    assert "held by another shard; waiting for their outcomes" in said
    assert said.count("another shard gave up 1 request(s)") == 1
