"""Issue 24: a mistyped `key_field` fails before any call; a CSV record is keyed by its number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flow_defects_support import run_flow

from prefect_openai_chat import ChatModel
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.examples.tickets import sample_tickets_path
from prefect_openai_chat.simulator import Simulator


def _tickets(count: int) -> list[dict[str, str]]:
    with sample_tickets_path().open(encoding="utf-8") as lines:
        return [json.loads(next(lines)) for _ in range(count)]


def _write_jsonl(path: Path, records: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def test_a_key_field_no_record_has_fails_before_any_call(
    chat_model: ChatModel, fresh_sim: Simulator, tmp_path: Path
) -> None:
    source = _write_jsonl(tmp_path / "in.jsonl", _tickets(3))
    with pytest.raises(InvalidInputError) as raised:
        run_flow(source, chat_model, tmp_path, key_field="id")
    message = str(raised.value)
    assert "key_field 'id'" in message and "'ticket_id'" in message and "'subject'" in message
    assert fresh_sim.stats().requests == 0
    assert not (tmp_path / "out.jsonl").exists()


def test_a_key_field_found_only_late_in_the_source_is_accepted(
    chat_model: ChatModel, tmp_path: Path
) -> None:
    """The check reads on until one record has the field; the others keep today's keys."""
    records = _tickets(4)
    for record in records[:3]:
        record["ticket_id"] = " " if record is records[1] else None  # type: ignore[assignment]
    source = _write_jsonl(tmp_path / "in.jsonl", records)
    summary = run_flow(source, chat_model, tmp_path)
    assert summary["records"] == 4 == summary["valid"] + summary["quarantined"]
    assert summary["missing_keys"] == 3
    keys = [json.loads(line)["_key"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(keys) == sorted(["1", "2", "3", records[3]["ticket_id"]])


def test_a_key_field_blank_on_every_record_of_a_csv_fails(
    chat_model: ChatModel, fresh_sim: Simulator, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("ticket_id,subject,body\n,Hi,text\n  ,Yo,more\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="key_field 'ticket_id' is missing"):
        run_flow(source, chat_model, tmp_path)
    assert fresh_sim.stats().requests == 0


def test_a_csv_record_is_keyed_by_its_number_and_quarantined_at_its_first_line(
    chat_model: ChatModel, tmp_path: Path
) -> None:
    """A record spanning lines 2-9 is record 1 (key "1"); a broken record spanning lines
    11-12 is record 3, quarantined with line 11, where it starts."""
    source = tmp_path / "in.csv"
    body = "\n".join(f"paragraph {n}" for n in range(8))  # 8 lines: the record is lines 2-9
    source.write_text(
        f'subject,body\nLong,"{body}"\nShort,one line\nBroken,"two\nlines",extra\n',
        encoding="utf-8",
    )
    summary = run_flow(source, chat_model, tmp_path, key_field=None)
    assert summary["records"] == 3 and summary["quarantined"] >= 1
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(row["_key"] for row in rows) == ["1", "2"]
    bad = [json.loads(line) for line in (tmp_path / "bad.jsonl").read_text().splitlines()]
    assert [(row["key"], row["line"]) for row in bad] == [("3", 11)]
