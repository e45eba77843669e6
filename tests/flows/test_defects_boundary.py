"""Issue 21: one record's fault ends as that record's outcome, and nothing counts as done
until the output can hold it (aliases, NaN, integers beyond 64 bits, user validators)."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from flow_defects_support import run_flow
from flow_support import make_model, read_jsonl, sample_tickets, write_jsonl
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from prefect_openai_chat import ChatModel
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.flows import extract_records
from prefect_openai_chat.flows.shards import (
    ShardParts,
    SourceCensus,
    merge_parts,
    parts_folder,
    plan_shards,
    write_summary,
)
from prefect_openai_chat.flows.sinks import open_quarantine, open_sink
from prefect_openai_chat.simulator import Simulator

BIG = "99999999999999999999"  # more than a 64-bit integer holds


class Person(BaseModel):
    """Aliased fields: the model answers `fullName`, the rows carry `full_name`."""

    full_name: str = Field(alias="fullName")
    count: int


class Invoice(BaseModel):
    """A validator reading another field's value, the classic KeyError when that one failed."""

    amount: int
    total: int

    @field_validator("amount")
    @classmethod
    def _small(cls, value: int) -> int:
        if value > 50:
            raise ValueError("amount must be at most 50")
        return value

    @field_validator("total")
    @classmethod
    def _with_amount(cls, value: int, info: ValidationInfo) -> int:
        return value + info.data["amount"]  # KeyError when `amount` failed


PROMPT = "Name: {name}\ncount: {count}"


def _people(tmp_path: Path, counts: list[str]) -> Path:
    rows = [{"id": f"p{n}", "name": "Ada Lovelace", "count": c} for n, c in enumerate(counts)]
    return write_jsonl(tmp_path / "people.jsonl", rows)


def _run(source: Path, schema: Any, model: ChatModel, tmp_path: Path, **options: Any) -> Any:
    params: dict[str, Any] = {
        "source": str(source),
        "schema": schema,
        "chat_model": model,
        "prompt": PROMPT,
        "output": str(tmp_path / "out.jsonl"),
        "quarantine": str(tmp_path / "bad.jsonl"),
        "key_field": "id",
        "cache": str(tmp_path / "cache.sqlite"),
        "max_reprompts": 1,
        **options,
    }
    return extract_records(**params)


def _sqlite_rows(path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM records")]


# --- 1. aliases: columns carry the field names, the same keys as the JSONL rows -------------


def test_aliased_fields_fill_their_parquet_and_sqlite_columns(
    chat_model: ChatModel, tmp_path: Path
) -> None:
    source = _people(tmp_path, ["3", "4"])
    jsonl = _run(source, Person, chat_model, tmp_path)
    assert jsonl["valid"] == 2
    expected = {row["_key"]: row for row in read_jsonl(tmp_path / "out.jsonl")}
    assert all(isinstance(row["full_name"], str) for row in expected.values())
    for name in ("out.parquet", "out.sqlite"):
        _run(source, Person, chat_model, tmp_path, output=str(tmp_path / name))
        rows = (
            pq.read_table(tmp_path / name).to_pylist()
            if name.endswith(".parquet")
            else _sqlite_rows(tmp_path / name)
        )
        assert list(rows[0]) == ["_key", "full_name", "count"], name
        assert {row["_key"]: row for row in rows} == expected, name


# --- 2. strict JSON: no NaN / Infinity tokens -------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_jsonl_output_refuses_non_finite_floats_and_stays_strict_json(
    tmp_path: Path, value: float
) -> None:
    path = tmp_path / "rows.jsonl"
    with open_sink(path) as sink:
        sink.write({"_key": "1", "score": 1.5})
        with pytest.raises(
            InvalidInputError,  # RowNotStorable
            match=r"field 'nested\.score'",
        ):
            sink.write({"_key": "2", "nested": {"score": value}})
    assert sink.rows == 1

    def strict(token: str) -> Any:
        raise ValueError(f"not strict JSON: {token}")

    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line, parse_constant=strict) for line in lines] == [
        {"_key": "1", "score": 1.5}
    ]


def test_quarantine_keeps_a_record_holding_nan_as_strict_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    with open_quarantine(path) as bad:
        bad.write({"line": 1, "key": "1", "reason": "r", "record": {"x": math.nan}})
    row = json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda t: 1 / 0)
    assert row["record"] == {"x": "nan"}


# --- 3. integers beyond 64 bits ---------------------------------------------------------------


@pytest.mark.parametrize("output", ["out.parquet", "out.sqlite", "out.jsonl"])
def test_an_integer_beyond_64_bits_is_quarantined_never_cached_ok(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path, output: str
) -> None:
    source = _people(tmp_path, ["3", BIG])
    summary = _run(source, Person, chat_model, tmp_path, output=str(tmp_path / output))
    assert (summary["records"], summary["valid"], summary["quarantined"]) == (2, 1, 1)
    (bad,) = read_jsonl(tmp_path / "bad.jsonl")
    assert bad["key"] == "p1" and bad["outcome"] == "invalid"
    assert "count" in bad["reason"] and "does not fit a 64-bit integer" in bad["reason"]
    assert fresh_sim.stats().requests == 1 + 2  # the big one was re-asked once, then final
    fresh_sim.reset()
    again = _run(source, Person, chat_model, tmp_path, output=str(tmp_path / output))
    assert (again["valid"], again["quarantined"], again["from_cache"]) == (1, 1, 2)
    assert fresh_sim.stats().requests == 0  # stored as final `invalid`: nothing paid again


@pytest.fixture(scope="module")
def batch_sim() -> Iterator[Simulator]:
    """A simulator whose Batch API batches end in 0.4 s."""
    with Simulator(profile="ideal", seed=11, batch_duration_s=0.4) as simulator:
        yield simulator


def test_a_batch_api_night_quarantines_an_integer_beyond_64_bits(
    batch_sim: Simulator, tmp_path: Path
) -> None:
    source = _people(tmp_path, ["3", BIG])
    output = str(tmp_path / "out.sqlite")
    options = {"via": "batch", "batch_options": {"poll_interval_s": 0.05}, "output": output}
    summary = _run(source, Person, make_model(batch_sim), tmp_path, **options)
    assert (summary["records"], summary["valid"], summary["quarantined"]) == (2, 1, 1)
    assert [row["_key"] for row in _sqlite_rows(tmp_path / "out.sqlite")] == ["p0"]
    (bad,) = read_jsonl(tmp_path / "bad.jsonl")
    assert bad["key"] == "p1" and "does not fit a 64-bit integer column" in bad["reason"]


def test_a_ledger_entry_stored_ok_with_a_huge_integer_goes_to_quarantine(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    source = _people(tmp_path, ["3", "4"])
    assert _run(source, Person, chat_model, tmp_path)["valid"] == 2
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:  # as an older version stored it
        for key, stored in db.execute("SELECT key, outcome FROM records").fetchall():
            outcome = json.loads(stored)
            if outcome["value"]["count"] == 4:
                outcome["value"]["count"] = int(BIG)
                db.execute(
                    "UPDATE records SET outcome = ? WHERE key = ?", (json.dumps(outcome), key)
                )
    fresh_sim.reset()
    summary = _run(source, Person, chat_model, tmp_path, output=str(tmp_path / "out.parquet"))
    assert (summary["records"], summary["valid"], summary["quarantined"]) == (2, 1, 1)
    assert fresh_sim.stats().requests == 0
    assert [row["_key"] for row in pq.read_table(tmp_path / "out.parquet").to_pylist()] == ["p0"]
    (bad,) = read_jsonl(tmp_path / "bad.jsonl")
    assert bad["key"] == "p1" and bad["line"] == 2
    assert bad["reason"] == (
        f"not storable: field 'count': {BIG} does not fit a 64-bit integer column"
    )


def test_a_sharded_run_quarantines_a_huge_integer_and_leaves_no_parts(
    chat_model: ChatModel, tmp_path: Path
) -> None:
    source = _people(tmp_path, ["3", "4", BIG, "5"])
    summary = _run(
        source, Person, chat_model, tmp_path, output=str(tmp_path / "out.parquet"), shards=2
    )
    assert (summary["records"], summary["valid"], summary["quarantined"]) == (4, 3, 1)
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 3
    assert [row["key"] for row in read_jsonl(tmp_path / "bad.jsonl")] == ["p2"]
    assert not list(tmp_path.glob(".out.parquet.shards-*"))


def _parts(
    tmp_path: Path, source: Path, output: Path
) -> tuple[Any, list[ShardParts], SourceCensus]:
    from prefect_openai_chat.flows.shards import census

    plan = plan_shards(source, 1)
    folder = parts_folder(output, "run")
    folder.mkdir()
    parts = [ShardParts.in_folder(folder, shard) for shard in plan]
    return plan, parts, census(source, plan, "id")


def test_the_merge_quarantines_a_part_row_the_output_cannot_hold(tmp_path: Path) -> None:
    source = _people(tmp_path, ["3", "4"])
    output = tmp_path / "out.parquet"
    plan, parts, expected = _parts(tmp_path, source, output)
    (part,) = parts
    rows = [
        {"_key": "p0", "full_name": "Ada", "count": 3},
        {"_key": "p1", "full_name": "Ada", "count": int(BIG)},
    ]
    part.output.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    part.quarantine.write_text("", encoding="utf-8")
    write_summary(part.summary, {"records": 2, "valid": 2, "quarantined": 0})
    totals, _ = merge_parts(plan, parts, expected, output, tmp_path / "bad.jsonl", Person)
    assert (totals.records, totals.valid, totals.quarantined) == (2, 1, 1)
    assert pq.read_table(output).to_pylist() == [rows[0]]
    (bad,) = read_jsonl(tmp_path / "bad.jsonl")
    assert (bad["line"], bad["key"], bad["outcome"]) == (2, "p1", "invalid")
    assert "does not fit a 64-bit integer column" in bad["reason"]
    assert not part.output.parent.exists()


def test_a_failed_merge_leaves_no_part_folder(tmp_path: Path) -> None:
    source = _people(tmp_path, ["3"])
    output = tmp_path / "out.jsonl"
    plan, parts, expected = _parts(tmp_path, source, output)
    parts[0].output.write_text("", encoding="utf-8")  # the shard left no summary
    with pytest.raises(RuntimeError, match="did not finish"):
        merge_parts(plan, parts, expected, output, tmp_path / "bad.jsonl", Person)
    assert not parts[0].output.parent.exists()
    assert not output.exists()


# --- 4. the schema's own code raising ---------------------------------------------------------


def test_a_validator_raising_key_error_quarantines_the_record_and_is_cached(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    rows = [{"id": "ok", "amount": "7", "total": "3"}, {"id": "bad", "amount": "90", "total": "3"}]
    source = write_jsonl(tmp_path / "invoices.jsonl", rows)
    prompt = "amount: {amount}\ntotal: {total}"
    summary = _run(source, Invoice, chat_model, tmp_path, prompt=prompt)
    assert (summary["records"], summary["valid"], summary["quarantined"]) == (2, 1, 1)
    assert read_jsonl(tmp_path / "out.jsonl") == [{"_key": "ok", "amount": 7, "total": 10}]
    (bad,) = read_jsonl(tmp_path / "bad.jsonl")
    assert bad["outcome"] == "invalid" and "KeyError: 'amount'" in bad["reason"]
    fresh_sim.reset()
    again = _run(source, Invoice, chat_model, tmp_path, prompt=prompt)
    assert (again["valid"], again["quarantined"]) == (1, 1)
    assert fresh_sim.stats().requests == 0  # a final `invalid`: not paid for again


class Doubled(BaseModel):
    """A default factory that reads the validated data."""

    count: int
    doubled: int | None = Field(default_factory=lambda data: data["count"] * 2)


def test_a_data_dependent_default_factory_does_not_fail_the_run(
    chat_model: ChatModel, tmp_path: Path
) -> None:
    source = _people(tmp_path, ["3", "4"])
    summary = _run(source, Doubled, chat_model, tmp_path)
    assert (summary["records"], summary["valid"]) == (2, 2)
    assert [row["count"] for row in read_jsonl(tmp_path / "out.jsonl")] == [3, 4]


# --- the per-record boundary: anything else one record raises is its own `error` -------------


class _Unformattable:
    """A record value whose formatting raises what no template check expects."""

    def __format__(self, spec: str) -> str:
        raise RuntimeError("cannot format this value")


def test_an_unexpected_exception_in_one_record_is_that_records_error_outcome(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    from prefect_openai_chat.tasks import extract_batch

    records = [
        {"id": "odd", "name": _Unformattable(), "count": "1"},
        {"id": "p1", "name": "Ada Lovelace", "count": "3"},
    ]
    cache = str(tmp_path / "cache.sqlite")
    report = extract_batch(
        chat_model, Person, records, prompt=PROMPT, key_field="id", cache=cache, max_reprompts=0
    )
    odd, fine = report.records
    assert (odd.key, odd.outcome, odd.ok) == ("odd", "error", False)
    assert "RuntimeError: cannot format this value" in (odd.reason or "")
    assert "tried again next run" in (odd.reason or "")
    assert fine.ok and fine.value == {"full_name": fine.value["full_name"], "count": 3}
    assert fresh_sim.stats().requests == 1  # the odd record was never sent


def test_a_ledger_entry_that_cannot_be_read_costs_its_record_not_the_run(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    """A ledger entry edited by hand (or left by another version) ends as that record's
    `error` with a reason saying what to do; the other records go on."""
    source = tmp_path / "in.jsonl"
    write_jsonl(source, sample_tickets(3))
    run_flow(source, chat_model, tmp_path)
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        (key,) = db.execute("SELECT key FROM records LIMIT 1").fetchone()
        db.execute("UPDATE records SET outcome = ? WHERE key = ?", ("{not json", key))

    summary = run_flow(source, chat_model, tmp_path)

    assert (summary["records"], summary["valid"], summary["quarantined"]) == (3, 2, 1)
    (bad,) = read_jsonl(tmp_path / "bad.jsonl")
    assert bad["outcome"] == "error" and "record ledger cannot be read" in bad["reason"]
