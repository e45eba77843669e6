"""A DataFrame or an Arrow table from the step before as `source`: every row once, values as meant.

The rows go through the real flow against the simulator: a missing value (NaN, NaT,
None, pd.NA) arrives as null, a Timestamp as ISO 8601 text, a numpy scalar as a Python
number; a row that cannot be JSON data is quarantined, not the run failed; with
`return_rows=True` the summary hands the valid rows to the next step.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from flow_defects_support import run_flow
from flow_support import read_jsonl, sample_tickets

from prefect_openai_chat import ChatModel
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.simulator import Simulator

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")


def ticket_frame(n: int, start: int) -> Any:
    """`n` sample tickets as a pandas DataFrame, with a timestamp, a float and an Int64
    column holding missing values on row 2, and row 3 repeating row 1's key."""
    tickets = sample_tickets(n, start=start)
    frame = pd.DataFrame(tickets)
    frame["opened"] = pd.to_datetime(
        ["2024-01-02 03:04:05.000000001"] + [None] + ["2024-03-04 05:06:07"] * (n - 2),
        format="ISO8601",
    )
    frame["amount"] = [12.5, np.nan] + [1.25] * (n - 2)
    frame["count"] = pd.array([1, None] + [3] * (n - 2), dtype="Int64")
    frame.loc[2, "ticket_id"] = frame.loc[0, "ticket_id"]  # a duplicate: shown in quarantine
    return frame


def as_kind(frame: Any, kind: str) -> Any:
    if kind == "pandas":
        return frame
    if kind == "polars":
        polars = pytest.importorskip("polars")
        return polars.from_pandas(frame)
    pyarrow = pytest.importorskip("pyarrow")
    table = pyarrow.Table.from_pandas(frame, preserve_index=False)
    return (
        table
        if kind == "arrow"
        else pyarrow.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=2))
    )


@pytest.mark.parametrize("kind", ["pandas", "polars", "arrow", "arrow-reader"])
def test_every_row_of_a_frame_ends_exactly_once_with_its_values_as_meant(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Any, kind: str
) -> None:
    frame = ticket_frame(6, start=280)
    summary = run_flow(as_kind(frame, kind), chat_model, tmp_path, return_rows=True)
    rows, bad = read_jsonl(tmp_path / "out.jsonl"), read_jsonl(tmp_path / "bad.jsonl")
    assert summary["records"] == 6 == summary["valid"] + summary["quarantined"]
    assert len(rows) + len(bad) == 6
    assert sorted([r["_key"] for r in rows] + [b["key"] for b in bad]) == sorted(
        str(key) for key in frame["ticket_id"]
    )
    assert summary["rows"] == rows  # the valid rows, in output order, without re-reading
    (duplicate,) = bad
    assert duplicate["outcome"] == "duplicate" and duplicate["line"] == 3
    record = duplicate["record"]  # row 3 as the flow saw it
    assert record["opened"] == "2024-03-04T05:06:07"
    assert record["amount"] == 1.25 and record["count"] == 3
    assert type(record["count"]) is int
    assert fresh_sim.stats().requests == 5


def test_missing_values_and_timestamps_arrive_as_null_and_iso_text() -> None:
    from prefect_openai_chat.flows.extract_records import extract_records
    from prefect_openai_chat.flows.source_flow import materialise_source

    frame = ticket_frame(3, start=286)
    frame["tags"] = [np.array([1, 2]), None, [np.int64(4), np.nan]]
    frame["note"] = pd.array(["x", pd.NA, "z"], dtype="object")
    args, _ = materialise_source(extract_records.fn, (frame,), {})
    first, second, third = args[0]
    assert first["opened"] == "2024-01-02T03:04:05.000000001"  # the nanosecond is kept
    assert first["tags"] == [1, 2] and first["amount"] == 12.5
    for name in ("opened", "amount", "count", "tags", "note"):
        assert second[name] is None, name
    assert third["tags"] == [4, None]


def test_a_row_that_is_not_json_data_costs_that_row(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Any
) -> None:
    frame = pd.DataFrame(sample_tickets(3, start=290))
    frame["ratio"] = [0.5, np.inf, 0.25]  # infinity: no JSON number, no null meant
    summary = run_flow(frame, chat_model, tmp_path)
    bad = read_jsonl(tmp_path / "bad.jsonl")
    assert summary["records"] == 3 and summary["valid"] == 2
    assert [b["line"] for b in bad] == [2] and "not a JSON number" in bad[0]["reason"]
    assert "rows" not in summary


def test_column_names_that_are_not_strings_are_refused_before_any_call(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Any
) -> None:
    frame = pd.DataFrame([[1, "a"]])  # columns 0 and 1
    with pytest.raises(InvalidInputError, match="column names must be strings"):
        run_flow(frame, chat_model, tmp_path)
    assert fresh_sim.stats().requests == 0


def test_return_rows_with_shards_is_refused(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Any
) -> None:
    with pytest.raises(InvalidInputError, match="return_rows=True keeps the rows"):
        run_flow(sample_tickets(2, start=294), chat_model, tmp_path, shards=2, return_rows=True)
    assert fresh_sim.stats().requests == 0


def test_a_list_source_never_imports_pandas_polars_or_pyarrow() -> None:
    code = (
        "import sys\n"
        "from prefect_openai_chat.flows.extract_records import extract_records\n"
        "from prefect_openai_chat.flows.source_flow import materialise_source\n"
        "materialise_source(extract_records.fn, ([{'id': 1}],), {})\n"
        "print(sorted(m for m in ('pandas', 'polars', 'pyarrow') if m in sys.modules))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert found.stdout.strip() == "[]", found.stdout + found.stderr
