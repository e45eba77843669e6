"""Readers, writers and pre-flight checks of extract_records, on their own (no API calls)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.examples.tickets import BugReport, SupportTicket
from prefect_openai_chat.flows.checks import (
    check_template_against,
    resolve_schema,
    template_fields,
)
from prefect_openai_chat.flows.sinks import (
    JsonlSink,
    ParquetSink,
    SqliteSink,
    check_writable,
    columns_of,
    open_sink,
)
from prefect_openai_chat.flows.sources import check_source, count_records, read_records

# --- sources ----------------------------------------------------------------------------------


def test_jsonl_items_keep_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"id": 1}\n'
        "\n"  # blank lines are not records
        '{"id": 2,\n'  # line 3: malformed
        "[1, 2]\n"  # line 4: JSON but not an object
        '{"id": 3, "text": "caf\u00e9"}\n',
        encoding="utf-8",
    )
    items = list(read_records(path))

    assert [i.line for i in items] == [1, 3, 4, 5]
    assert items[0].record == {"id": 1} and items[0].error is None
    assert items[1].record is None and items[1].raw == '{"id": 2,'
    assert (items[1].error or "").startswith("malformed JSON on line 3:")
    assert items[2].error == "line 4 is JSON but not an object" and items[2].raw == "[1, 2]"
    assert items[3].record == {"id": 3, "text": "café"}
    assert count_records(path) == 4


def test_reading_is_lazy(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": n}) + "\n" for n in range(1000)))
    items = read_records(path)
    first = next(items)
    assert first.record == {"id": 0}
    assert next(items).line == 2  # one at a time, not a list


def test_csv_rows_quoted_newlines_and_wrong_field_counts(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text(
        "id,subject,body\n"
        '1,Hello,"two\nlines"\n'  # lines 2-3
        "2,Short\n"  # line 4: too few
        ",,\n"  # line 5: empty row, skipped
        "3,Too,many,fields\n"  # line 6
        "4,Fine,body\n",  # line 7
        encoding="utf-8",
    )
    items = list(read_records(path))

    assert items[0].record == {"id": "1", "subject": "Hello", "body": "two\nlines"}
    assert items[0].line == 2  # the line the row starts on
    assert [item.key for item in items] == ["1", "2", "3", "4"]  # record numbers
    assert (items[1].line, items[1].error) == (4, "CSV line 4 has 2 fields, the header has 3")
    assert items[1].raw == "2,Short"
    assert (items[2].line, items[2].error) == (6, "CSV line 6 has 4 fields, the header has 3")
    assert (items[3].line, items[3].record) == (7, {"id": "4", "subject": "Fine", "body": "body"})
    assert len(items) == 4


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_byte_order_mark_does_not_break_the_first_record(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"excel{suffix}"
    text = "ticket_id,body\nT-1,hi\n" if suffix == ".csv" else '{"ticket_id": "T-1"}\n'
    path.write_text(text, encoding="utf-8-sig")

    (item,) = read_records(path)
    assert item.record is not None and item.record["ticket_id"] == "T-1"


def test_iterable_source(tmp_path: Path) -> None:
    items = list(read_records([{"a": 1}, "not a dict", {"a": 2}]))
    assert [i.line for i in items] == [1, 2, 3]
    assert items[1].error == "item 2 is a str, not a dict"
    assert count_records([{"a": 1}]) == 1
    assert count_records(iter([{"a": 1}])) is None


def test_check_source_errors_name_the_culprit(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"'.*missing\.jsonl' does not exist"):
        check_source(tmp_path / "missing.jsonl")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(InvalidInputError, match="not a file"):
        check_source(tmp_path / "dir.csv")
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    with pytest.raises(InvalidInputError, match=r"data\.xlsx'.*use a \.jsonl"):
        check_source(tmp_path / "data.xlsx")
    with pytest.raises(InvalidInputError, match="got dict"):
        check_source({"a": 1})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="got int"):
        check_source(5)  # type: ignore[arg-type]
    (tmp_path / "ok.ndjson").write_text('{"a": 1}\n')
    check_source(tmp_path / "ok.ndjson")
    check_source([{"a": 1}])


# --- checks -------------------------------------------------------------------------------


def test_template_fields_and_the_check_against_records() -> None:
    assert template_fields("Subject: {subject}\n\n{body} {meta[lang]} {t:>9} {{literal}}") == {
        "subject",
        "body",
        "meta",
        "t",
    }
    with pytest.raises(InvalidInputError, match="malformed"):
        template_fields("{subject")
    with pytest.raises(InvalidInputError, match="positional field"):
        template_fields("{}")
    with pytest.raises(InvalidInputError, match=r"attribute access \{a\.b\}; use \{a\[b\]\}"):
        template_fields("{a.b}")

    items = list(read_records([{"subject": "s"}, {"body": "b"}]))
    check_template_against(items, {"subject", "body"})  # each field on some record: fine
    with pytest.raises(InvalidInputError, match=r"\['tier'\], which no record"):
        check_template_against(items, {"subject", "tier"})
    # the one record with the field is unreadable (half an emoji): the template is right,
    # that record is quarantined and the others skipped, one by one; the night goes on
    items = list(read_records([{"body": "b \ud800"}, {"subject": "s"}]))
    assert items[0].record is None
    assert check_template_against(items, {"body"}) == (2, 1)


def test_resolve_schema() -> None:
    assert resolve_schema(SupportTicket) is SupportTicket
    assert resolve_schema("prefect_openai_chat.examples.tickets:BugReport") is BugReport
    with pytest.raises(InvalidInputError, match="cannot be imported"):
        resolve_schema("prefect_openai_chat.nope:X")
    with pytest.raises(InvalidInputError, match="has no attribute 'X'"):
        resolve_schema("prefect_openai_chat.examples.tickets:X")
    with pytest.raises(InvalidInputError, match="is a function, not a pydantic model"):
        resolve_schema("prefect_openai_chat.examples.tickets:sample_tickets_path")
    with pytest.raises(InvalidInputError, match="import path"):
        resolve_schema(42)


# --- sinks ---------------------------------------------------------------------------------


def test_check_writable(tmp_path: Path) -> None:
    target = check_writable(str(tmp_path / "new" / "deeper" / "out.parquet"), "output")
    assert target.parent.is_dir()
    assert list(target.parent.iterdir()) == []  # the probe file is gone

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InvalidInputError, match=r"output '.*file/out\.jsonl' cannot be written"):
        check_writable(blocker / "out.jsonl", "output")
    with pytest.raises(InvalidInputError, match=r"quarantine '.*q\.txt': use one of"):
        check_writable(tmp_path / "q.txt", "quarantine")
    (tmp_path / "taken.jsonl").mkdir()
    with pytest.raises(InvalidInputError, match="is a directory"):
        check_writable(tmp_path / "taken.jsonl", "output")


def test_sinks_appear_only_on_a_clean_close(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"old": true}\n')

    with pytest.raises(RuntimeError), open_sink(path) as sink:
        sink.write({"new": 1})
        raise RuntimeError("crash mid-run")
    assert path.read_text() == '{"old": true}\n'  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]  # no temporary left

    with open_sink(path) as sink:
        sink.write({"new": 1, "text": "café"})
        sink.write({"new": 2, "when": "2024-01-02"})
        assert not path.read_text().startswith('{"new"')  # invisible until closed
    assert sink.rows == 2
    assert path.read_text(encoding="utf-8").splitlines() == [
        '{"new": 1, "text": "café"}',
        '{"new": 2, "when": "2024-01-02"}',
    ]


def test_open_sink_picks_the_writer_by_extension(tmp_path: Path) -> None:
    for name, kind in [
        ("a.jsonl", JsonlSink),
        ("a.ndjson", JsonlSink),
        ("a.parquet", ParquetSink),
        ("a.sqlite", SqliteSink),
        ("a.db", SqliteSink),
    ]:
        with open_sink(tmp_path / name, SupportTicket) as sink:
            assert type(sink) is kind


def test_columns_follow_the_schema() -> None:
    columns = columns_of(BugReport, "_key")
    assert list(columns) == ["_key", *BugReport.model_fields]
    assert columns["_key"] == "string"
    assert columns["steps_to_reproduce"] == "json"
    assert columns["app_version"] == "string"  # optional string stays a string
    assert columns_of(SupportTicket, "_key")["amount"] == "number"


def _bug_rows() -> list[dict[str, object]]:
    return [
        {
            "_key": "T-1",
            "product": "Halo",
            "platform": "device",
            "app_version": "5.6.1",
            "severity": "major",
            "error_message": None,
            "steps_to_reproduce": ["update", "wait an hour"],
            "summary": "Reboots hourly.",
        },
        {
            "_key": "T-2",
            "product": "App",
            "platform": "ios",
            "severity": "minor",
            "steps_to_reproduce": [],
            "summary": "Typo.",
        },
    ]


def test_parquet_sink_types_and_nested_values(tmp_path: Path) -> None:
    path = tmp_path / "bugs.parquet"
    with open_sink(path, BugReport) as sink:
        for row in _bug_rows():
            sink.write(row)

    table = pq.read_table(path)
    assert table.column_names == ["_key", *BugReport.model_fields]
    rows = table.to_pylist()
    assert rows[0]["steps_to_reproduce"] == '["update", "wait an hour"]'
    assert rows[1]["app_version"] is None and rows[1]["steps_to_reproduce"] == "[]"
    assert str(table.schema.field("severity").type) == "string"


def test_parquet_sink_writes_many_rows_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "many.parquet"
    with open_sink(path, SupportTicket) as sink:
        for n in range(ParquetSink.BATCH * 2 + 5):
            sink.write({"_key": str(n), "amount": float(n), "customer_name": "A"})
    table = pq.read_table(path)
    assert table.num_rows == 2005
    assert table.column("amount").to_pylist()[-1] == 2004.0


def test_sqlite_sink(tmp_path: Path) -> None:
    path = tmp_path / "bugs.sqlite"
    with open_sink(path, BugReport) as sink:
        for row in _bug_rows():
            sink.write(row)

    with sqlite3.connect(path) as db:
        declared = {r[1]: r[2] for r in db.execute("PRAGMA table_info(records)")}
        rows = db.execute("SELECT _key, steps_to_reproduce, app_version FROM records").fetchall()
    assert declared["_key"] == "TEXT" and declared["steps_to_reproduce"] == "TEXT"
    assert rows == [("T-1", '["update", "wait an hour"]', "5.6.1"), ("T-2", "[]", None)]


def test_sqlite_sink_is_atomic_too(tmp_path: Path) -> None:
    path = tmp_path / "rows.db"
    with pytest.raises(ValueError), open_sink(path, SupportTicket) as sink:
        sink.write({"_key": "1"})
        raise ValueError("crash")
    assert list(tmp_path.iterdir()) == []


# --- templates and strict decoding ------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    [
        "Subject: {subject}\n\n{body}",
        "{ticket_id!r:>12} {{literal}} {subject:.20} {body!s}",
        "{channel:^11}",
    ],
)
def test_rendering_matches_str_format_so_cache_keys_do_not_change(prompt: str) -> None:
    from flow_support import sample_tickets

    from prefect_openai_chat.extraction.templates import render

    for ticket in sample_tickets(20):
        record = {**ticket, "width": 11}
        assert render(record, prompt) == prompt.format(**record)
    assert render("a text", "Ticket: {text}") == "Ticket: a text"
    assert render({"a": 1}, None) == '{"a": 1}'


def test_a_csv_header_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"id,r\xe9sum\xe9\n1,x\n")
    with pytest.raises(InvalidInputError, match=r"the CSV header: line 1 is not valid UTF-8"):
        list(read_records(path))


def test_fields_differing_only_in_case_are_refused_for_sqlite_before_a_file(
    tmp_path: Path,
) -> None:
    from pydantic import create_model

    from prefect_openai_chat.flows.sinks import open_sink

    both = create_model("Both", Name=(str, ...), name=(str, ...))
    with pytest.raises(InvalidInputError, match="'Name' and 'name' differ only in case"):
        open_sink(tmp_path / "rows.sqlite", both)
    assert list(tmp_path.iterdir()) == []
    with open_sink(tmp_path / "rows.parquet", both) as sink:  # other kinds keep both
        sink.write({"_key": "1", "Name": "a", "name": "b"})
    # a run's pre-flight refuses it, before any call (a sharded night writes after paying)
    from prefect_openai_chat import ExtractionSpec, RunOptions
    from prefect_openai_chat.flows.checks import preflight

    spec = ExtractionSpec(schema=both, prompt="{text}")
    with pytest.raises(InvalidInputError, match="differ only in case"):
        preflight([{"text": "t"}], str(tmp_path / "night.db"), str(tmp_path / "bad.jsonl"),
                  spec, RunOptions(cache=False))  # fmt: skip
    accented = create_model("Accented", É=(str, ...), é=(str, ...))  # SQLite folds ASCII only
    with open_sink(tmp_path / "accents.sqlite", accented) as sink:
        sink.write({"_key": "1", "É": "a", "é": "b"})
