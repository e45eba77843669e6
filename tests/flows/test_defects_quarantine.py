"""Issue #10, defects 3 and 8: full quarantine rows in every format; raw outputs capped in the
quarantine file and the record cache."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from flow_defects_support import run_flow
from flow_support import make_model, read_jsonl, sample_tickets, write_jsonl

from prefect_openai_chat.simulator import Simulator

pytestmark = pytest.mark.filterwarnings('ignore:Field name "schema"')

MIB = 1024 * 1024


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()  # type: ignore[no-any-return]
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM records")]


@pytest.mark.parametrize("suffix", [".parquet", ".sqlite", ".db"])
def test_a_flat_quarantine_keeps_every_field(
    fresh_sim: Simulator, tmp_path: Path, suffix: str
) -> None:
    tickets = sample_tickets(2, start=130)
    source = write_jsonl(
        tmp_path / "in.jsonl",
        [tickets[0], "{not json", {"ticket_id": "T-NOBODY", "subject": "s"}, tickets[1]],
    )
    chat_model = make_model(fresh_sim, fault="missing-fields")  # every answer stays invalid
    reference = tmp_path / "reference"
    reference.mkdir()
    run_flow(source, chat_model, reference, max_reprompts=0)
    expected = read_jsonl(reference / "bad.jsonl")
    invalid = [row for row in expected if row["outcome"] == "invalid"]
    assert len(expected) == 4 and len(invalid) == 2
    assert all(row["last_raw_output"] and row["record"]["body"] for row in invalid)

    quarantine = tmp_path / f"bad{suffix}"
    summary = run_flow(source, chat_model, tmp_path, quarantine=str(quarantine), max_reprompts=0)

    assert summary["quarantined"] == 4
    rows = _read_rows(quarantine)
    assert list(rows[0]) == [
        "line",
        "key",
        "reason",
        "outcome",
        "attempts",
        "record",
        "last_raw_output",
    ]
    flat = [{**row, "record": json.loads(row["record"])} for row in rows]
    assert flat == expected  # the same rows as the JSONL quarantine, records as JSON text
    by_line = {row["line"]: row for row in rows}
    assert by_line[2]["record"] == '"{not json"' and by_line[2]["outcome"] == "unreadable"


def test_a_huge_raw_output_is_capped_in_the_quarantine_file(tmp_path: Path) -> None:
    from prefect_openai_chat.extraction.ledger import RAW_OUTPUT_LIMIT
    from prefect_openai_chat.flows.sinks import open_quarantine

    huge = '{"answer": "' + "x" * (20 * MIB) + '"}'
    for name in ("bad.jsonl", "bad.parquet", "bad.sqlite"):
        path = tmp_path / name
        with open_quarantine(path) as sink:
            sink.write({"line": 1, "key": "1", "reason": "invalid", "last_raw_output": huge})
            sink.write({"line": 2, "key": "2", "reason": "invalid", "last_raw_output": "short"})
        assert path.stat().st_size < 2 * RAW_OUTPUT_LIMIT, name
        rows = read_jsonl(path) if name.endswith(".jsonl") else _read_rows(path)
        kept = rows[0]["last_raw_output"]
        assert kept.startswith('{"answer": "xxx')
        assert kept.endswith(
            f"[prefect-openai-chat: {len(huge) - RAW_OUTPUT_LIMIT} more bytes cut;"
            f" the raw output had {len(huge)} bytes]"
        )
        assert len(kept.encode()) < RAW_OUTPUT_LIMIT + 100
        assert rows[1]["last_raw_output"] == "short"


def test_a_huge_raw_output_is_capped_in_the_record_cache(tmp_path: Path) -> None:
    from prefect_openai_chat.extraction.ledger import RAW_OUTPUT_LIMIT, SqliteLedger
    from prefect_openai_chat.results import RecordOutcome

    huge = "é" * (10 * MIB)  # 20 MiB of UTF-8: the cut never splits a character
    outcome = RecordOutcome(
        index=0, key="T-1", ok=False, outcome="invalid", last_raw_output=huge
    ).model_dump_json()
    cache = SqliteLedger(tmp_path / "cache.sqlite")
    cache.complete("k", outcome)
    cache.complete("small", '{"ok": true}')
    stored = cache.get_many(["k", "small"])
    cache.close()

    assert stored["small"] == '{"ok": true}'
    assert len(stored["k"].encode()) < RAW_OUTPUT_LIMIT + 1000
    back = RecordOutcome.model_validate_json(stored["k"])
    assert back.outcome == "invalid" and back.key == "T-1"
    assert back.last_raw_output is not None
    assert back.last_raw_output.startswith("éé")
    assert "more bytes cut; the raw output had 20971520 bytes]" in back.last_raw_output
