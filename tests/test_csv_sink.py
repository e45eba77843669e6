"""Issue 24: the CSV output is strict: what it accepts reads back as it was written."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from prefect_openai_chat.flows.sinks import (
    RowNotStorable,
    check_writable,
    columns_of,
    nullable_columns,
    open_quarantine,
    open_sink,
    read_csv_rows,
)


class Ticket(BaseModel):
    subject: str
    note: str | None = None
    priority: int
    score: float
    urgent: bool
    tags: list[str]


ROWS = [
    {"_key": "t-1", "subject": 'a "quoted", multi\nline', "note": None, "priority": 3,
     "score": 0.1 + 0.2, "urgent": True, "tags": ["x", "y,z"]},
    {"_key": "t-2", "subject": "", "note": "n", "priority": -(2**63), "score": 1e-300,
     "urgent": False, "tags": []},
    # a field past the csv module's default limit (131,072 characters), a NUL, a lone CR
    {"_key": "t-3", "subject": "z" * 200_000, "note": "nul\x00 cr\r", "priority": 0,
     "score": -0.0, "urgent": False, "tags": ["\ufeffbom"]},
]  # fmt: skip


def test_rows_read_back_as_written(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    with open_sink(path, Ticket) as sink:
        for row in ROWS:
            sink.write(row)
    assert read_csv_rows(path, columns_of(Ticket, "_key"), nullable_columns(Ticket)) == ROWS
    assert path.read_text().splitlines()[0] == "_key,subject,note,priority,score,urgent,tags"


def test_an_empty_string_that_could_be_null_is_refused_with_the_reason(tmp_path: Path) -> None:
    with open_sink(tmp_path / "rows.csv", Ticket) as sink:
        with pytest.raises(RowNotStorable, match="'note': an empty string would read back"):
            sink.write({**ROWS[0], "note": ""})
        with pytest.raises(RowNotStorable, match="does not fit a CSV integer column"):
            sink.write({**ROWS[0], "priority": "3"})
        assert sink.rows == 0  # nothing of a refused row was written


def test_csv_is_an_output_kind_and_the_quarantine_keeps_every_record(tmp_path: Path) -> None:
    assert check_writable(str(tmp_path / "out.csv"), "output") == tmp_path / "out.csv"
    with open_quarantine(tmp_path / "bad.csv") as bad:
        bad.write({"line": 1, "key": "k", "reason": "r", "outcome": "invalid", "attempts": 1,
                   "record": {"a": 1}, "last_raw_output": ""})  # fmt: skip
    assert bad.rows == 1
