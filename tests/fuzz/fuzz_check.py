"""Run one fuzz `Case` through the real `extract_records` flow and check the invariant.

`check_case(case, sim, folder)` writes the case's source under `folder`, scripts the
simulator's answer for each record (`SimulatorSettings.answers`, by the record's marker),
runs the flow twice on one ledger, and asserts after each run:

1. every non-blank input record ends exactly once: its key (its line number; a CSV
   record's number) is in the output or in the quarantine, once, and no other key is;
2. each output row, read back (JSONL with a parser that refuses NaN, Parquet with
   pyarrow, SQLite with sqlite3), equals the value the record's answer validates to; a
   record whose answer does not validate into a storable value is in the quarantine
   with a reason;
3. the run completes (no exception leaves the flow);
4. the re-run pays nothing for the records whose first run ended final: no request of
   the re-run carries their marker.

A CSV with a duplicated header name must be refused with `InvalidInputError` before any
call, writing nothing; a CSV with an unterminated quote may be refused the same way
(naming the line), or else must keep the invariant.
"""

from __future__ import annotations

import codecs
import json
import sqlite3
from pathlib import Path
from typing import Any

from fuzz_cases import BIG, EITHER, READABLE, UNREADABLE, Case, RecordPlan, expected_value
from pydantic import BaseModel

from prefect_openai_chat import ChatModel, ExtractionSpec, OpenAICredentials, RunOptions
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.flows import extract_records
from prefect_openai_chat.flows.sinks import columns_of, nullable_columns, read_csv_rows
from prefect_openai_chat.results import FINAL_OUTCOMES
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.simulator.request_log import read_request_log

MODEL = "gpt-4o-mini-2024-07-18"
PROMPT = "Extract the record.\n{text}"


class InvariantError(AssertionError):
    """The invariant failed for a case; the message says how, with the case."""


def make_model(sim: Simulator) -> ChatModel:
    """A ChatModel on `sim`, with short retries (the simulator is `ideal`)."""
    credentials = OpenAICredentials(base_url=sim.base_url, api_key=sim.api_key)
    return ChatModel(
        credentials=credentials,
        model=MODEL,
        timeouts={"read_s": 30.0},
    )


# --- writing the source ----------------------------------------------------------------------


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _jsonl_line(r: RecordPlan) -> bytes:
    text = json.dumps(r.text, ensure_ascii=False)
    first = json.dumps(r.text + " first")
    line = {
        "plain": lambda: json.dumps({"text": r.text, "n": r.extra}, ensure_ascii=False),
        "dup-keys": lambda: f'{{"text": {first}, "text": {text}}}',
        "deep": lambda: f'{{"text": {text}, "deep": {_deep(30)}}}',
        "very-deep": lambda: f'{{"text": {text}, "deep": {_deep(5000)}}}',
        "surrogate": lambda: f'{{"text": {text[:-1]} \\ud800 lone"}}',
        "big": lambda: json.dumps({"text": r.text + " " + "b" * BIG}),
        "not-object": lambda: json.dumps([r.text]),
        "malformed": lambda: f'{{"text": {text}',
        "cr-between-tokens": lambda: f'{{"text": {text},\r "n": 1}}',
        "cr-in-string": lambda: f'{{"text": "\r{text[1:]}}}',
    }
    if r.quirk == "not-utf8":
        return b'{"text": "\xff\xfe ' + r.marker.encode() + b'"}'
    return line[r.quirk]().encode("utf-8")


def _quote(value: Any) -> str:
    return '"' + str(value).replace('"', '""') + '"'


def _csv_line(r: RecordPlan, newline: str) -> bytes:
    if r.quirk == "not-utf8":
        return b'"\xff ' + r.marker.encode() + b'",5'
    line = {
        "plain": lambda: f"{_quote(r.text)},{_quote(r.extra)}",
        "quoted-newline": lambda: f"{_quote(r.words + newline + r.marker)},5",
        "wrong-width": lambda: f"{_quote(r.text)},1,2",
        "stray-cr": lambda: f"vx\rvy {r.marker},5",
        "big": lambda: f"{_quote(r.text + ' ' + 'b' * BIG)},5",
        "unterminated": lambda: f'"{r.text.replace(chr(34), chr(34) * 2)},5',
    }[r.quirk]()
    return line.encode("utf-8")


_BLANKS = (b"", b"   ", b"\t")


def _blanks(count: int) -> list[bytes]:
    return [_BLANKS[n % len(_BLANKS)] for n in range(count)]


def write_file(case: Case, path: Path) -> None:
    """The case's JSONL or CSV file; sets each record's key (the line the plugin reports)."""
    newline = "\r\n" if case.crlf else "\n"
    lines: list[bytes] = []
    if case.source_kind == "csv":
        lines.append(b"text,n,n" if case.duplicate_header else b"text,n")
    items = 0  # a CSV's items so far: its key is its number (issue 24)
    swallowed = False  # after an unterminated quote: one item per non-blank physical line
    for index, record in enumerate(case.records):
        lines += _blanks(case.blank_lines.count(index))
        record.line = str(sum(1 + line.count(b"\n") for line in lines) + 1)  # where it starts
        if case.source_kind == "csv":
            lines.append(_csv_line(record, newline))
            swallowed = swallowed or record.quirk == "unterminated"
            items += 1 + lines[-1].count(b"\n") if swallowed else 1
            record.key = str(items)  # after an open quote: the item of its last line
        else:
            lines.append(_jsonl_line(record))
            record.key = record.line  # a JSONL record's key is its line number
    lines += _blanks(case.blank_lines.count(len(case.records)))
    data = newline.encode().join(lines) + newline.encode()
    path.write_bytes((codecs.BOM_UTF8 if case.bom else b"") + data)


def items_of(case: Case) -> list[Any]:
    """The case's items (an iterable source); sets each record's key (its position)."""
    items: list[Any] = []
    for position, r in enumerate(case.records, start=1):
        r.key = str(position)
        items.append(
            {
                "plain": lambda r=r: {"text": r.text, "n": r.extra},
                "surrogate": lambda r=r: {"text": r.text + " \ud800 lone"},
                "deep": lambda r=r: {"text": r.text, "deep": _nested(30)},
                "no-text": lambda r=r: {"other": r.text},
                "not-dict": lambda r=r: [r.text, r.number],
                "big": lambda r=r: {"text": r.text + " " + "b" * BIG},
            }[r.quirk]()
        )
    return items


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


# --- what each record must become -------------------------------------------------------------


def fates(case: Case) -> dict[str, tuple[str, dict[str, Any] | None, str]]:
    """Key -> (fate, expected row or None, why) for every record."""
    out: dict[str, tuple[str, dict[str, Any] | None, str]] = {}
    unterminated = False
    for r in case.records:
        fate = r.fate
        unterminated = unterminated or (case.source_kind == "csv" and r.quirk == "unterminated")
        if unterminated:
            fate = EITHER  # swallowed by an open quote: quarantined or refused, never lost
        value, why = (
            (None, "none, the line is unreadable")
            if fate == UNREADABLE
            else expected_value(case.schema, r.answer)
        )
        if value is not None and case.output_suffix == ".csv":
            value, why = _csv_holds(case.schema, value)
        row = None if value is None else {"_key": r.key, **value}
        out[r.key] = (fate, row, why)
    return out


def _csv_holds(schema: type[BaseModel], value: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """`value`, or None when a CSV output refuses it: an empty cell reads back as null, so
    an empty string where a null could also be is quarantined (the sink's documented rule)."""
    nullable = nullable_columns(schema)
    for name, kind in columns_of(schema, "_key").items():
        cell = value.get(name)
        if kind != "json" and cell == "" and (name in nullable or kind != "string"):
            return None, f"an empty string in {name!r}, which a CSV cell cannot tell from null"
    return value, "valid"


# --- reading the outputs back -----------------------------------------------------------------


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} in a JSONL row: not JSON")


def strict_loads(text: str) -> Any:
    """`json.loads` refusing NaN and Infinity, as every other JSON reader does."""
    return json.loads(text, parse_constant=_no_constants)


def read_rows(path: Path, schema: type[BaseModel] | None = None) -> list[dict[str, Any]]:
    """Rows of a JSONL, Parquet, SQLite or CSV (an output of `schema`) file, as it holds them."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv_rows(path, columns_of(schema, "_key"), nullable_columns(schema))
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()  # type: ignore[no-any-return]
    if suffix in (".sqlite", ".db"):
        with sqlite3.connect(path) as db:
            cursor = db.execute("SELECT * FROM records")
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor]
    text = path.read_text(encoding="utf-8")
    return [strict_loads(line) for line in text.split("\n") if line]


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same JSON types all the way down (True is not 1, 1 is not 1.0)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if isinstance(a, float) and isinstance(b, float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def cell_matches(cell: Any, expected: Any, flat: bool) -> bool:
    """A cell holds `expected`: as is, or (Parquet, SQLite) as JSON text or an SQLite 0/1."""
    if same(cell, expected):
        return True
    if not flat:
        return False
    if isinstance(cell, str):  # a JSON text column: nested values, unions such as int | str
        try:
            return same(strict_loads(cell), expected)
        except ValueError:
            return False
    return isinstance(expected, bool) and type(cell) is int and cell == int(expected)


def row_matches(row: dict[str, Any], expected: dict[str, Any], flat: bool) -> bool:
    """Every column of the row holds the expected value; no column missing or extra."""
    if row.keys() != expected.keys():
        return False
    return all(cell_matches(row[k], expected[k], flat) for k in expected)


# --- one run and its checks --------------------------------------------------------------------


def run_once(case: Case, sim: Simulator, folder: Path, source: Any) -> dict[str, Any]:
    """`extract_records` over the case's source, outputs and ledger under `folder`."""
    return extract_records(  # type: ignore[no-any-return]
        source=source,
        output=str(folder / f"out{case.output_suffix}"),
        quarantine=str(folder / f"bad{case.quarantine_suffix}"),
        spec=ExtractionSpec(schema=case.schema, prompt=PROMPT, mode=case.mode),
        chat_model=make_model(sim),
        run=RunOptions(
            chunk_size=case.batch_size,
            concurrency=4,
            cache=str(folder / "ledger.sqlite"),
            via=case.via,
            batch_api={"poll_interval_s": 0.05} if case.via == "batch" else None,
        ),
    )


def _fail(case: Case, what: str) -> InvariantError:
    return InvariantError(f"{what}\n--- the case ---\n{case.describe()}")


def check_outputs(case: Case, folder: Path, label: str) -> dict[str, str]:
    """Assert invariants 1 and 2 on the files of one run; returns key -> outcome of each."""
    out_path = folder / f"out{case.output_suffix}"
    bad_path = folder / f"bad{case.quarantine_suffix}"
    try:
        rows, bad = read_rows(out_path, case.schema), read_rows(bad_path)
    except (ValueError, OSError, sqlite3.Error) as exc:  # e.g. NaN in a JSONL file
        raise _fail(case, f"{label}: the outputs cannot be read back: {exc}") from exc
    flat = case.output_suffix not in (".jsonl", ".ndjson")
    expected = fates(case)
    seen: dict[str, list[str]] = {}
    for row in rows:
        seen.setdefault(str(row.get("_key")), []).append("output")
    for row in bad:
        seen.setdefault(str(row.get("key")), []).append("quarantine")
    problems, open_keys = _after_open_quote(case, expected, seen)
    for key in sorted(set(seen) | set(expected), key=lambda k: (len(k), k)):
        where = seen.get(key, [])
        if key not in expected:
            problems.append(f"key {key}: no such input record, yet in {where}")
        elif len(where) != 1:
            problems.append(f"line {key}: ended {len(where)} times ({where}), not once")
    outcomes: dict[str, str] = {}
    for row in rows:
        key = str(row.get("_key"))
        fate, value, why = expected.get(key, (READABLE, None, "?"))
        outcomes[key] = "ok"
        if key in open_keys:
            continue  # which record's text this item holds cannot be foretold
        if value is None:
            problems.append(f"line {key}: in the output as {row!r}; its answer: {why}")
        elif not row_matches(row, value, flat):
            problems.append(f"line {key}: the output row {row!r} is not the answer's {value!r}")
    for row in bad:
        key = str(row.get("key"))
        outcomes[key] = str(row.get("outcome"))
        fate, value, why = expected.get(key, (READABLE, None, "?"))
        if not isinstance(row.get("reason"), str) or not row["reason"].strip():
            problems.append(f"line {key}: quarantined without a reason: {row!r}")
        if value is not None and fate == READABLE and key not in open_keys:
            problems.append(
                f"line {key}: quarantined ({row.get('reason')!r}), but its answer is valid"
                f" and storable: {value!r}"
            )
    if problems:
        raise _fail(case, f"{label}: " + "\n".join(problems))
    return outcomes


def _after_open_quote(
    case: Case, expected: dict[str, Any], seen: dict[str, list[str]]
) -> tuple[list[str], set[str]]:
    """The items of a CSV source from a quote never closed on: each ends once, numbered on.

    A later line's quote may close the open one, so how its lines group into items (and
    so their numbers, and which record a row holds) cannot be foretold: from the item it
    starts on, the items must be numbered without a gap, each end once, and be no more
    than the lines (one a line at most). Those keys leave `expected` and `seen`, and are
    returned with the problems found.
    """
    opened = [r for r in case.records if r.quirk == "unterminated"]
    if case.source_kind != "csv" or not opened:
        return [], set()
    first, most = int(opened[0].key), int(case.records[-1].key)
    keys = sorted(int(k) for k in seen if k.isdigit() and int(k) >= first)
    for key in [k for k in expected if int(k) >= first]:
        del expected[key]
    problems = [
        f"line {k}: ended {len(seen[str(k)])} times, not once"
        for k in keys
        if len(seen[str(k)]) != 1
    ]
    if keys != list(range(first, first + len(keys))) or not 1 <= len(keys) <= most - first + 1:
        problems.append(
            f"the items from the open quote on (item {first}) are {keys}: not numbered"
            f" {first}, {first + 1}, ... up to at most {most}"
        )
    for key in keys:
        del seen[str(key)]
    return problems, {str(k) for k in keys}


def _requests_for(log: Path, start: int, marker: str) -> int:
    return sum(1 for e in read_request_log(log)[start:] if marker in e["body"])


def check_case(case: Case, sim: Simulator, folder: Path) -> None:
    """Run the case twice on one ledger and assert the invariant (see the module docstring)."""
    log = folder / "requests.jsonl"
    sim.reset()
    sim.configure(
        answers={r.marker: r.answer.scripted() for r in case.records},
        request_log=str(log),
        batch_duration_s=0.2,
    )
    try:
        _check(case, sim, folder, log)
    finally:
        sim.configure(answers={}, request_log=None)


def _check(case: Case, sim: Simulator, folder: Path, log: Path) -> None:
    if case.source_kind == "items":
        source: Any = items_of(case)
    else:
        path = folder / f"source.{case.source_kind}"
        write_file(case, path)
        source = str(path)
    refused = _first_run(case, sim, folder, source)
    if refused:
        return
    outcomes = check_outputs(case, folder, "first run")
    before = len(read_request_log(log))
    try:
        run_once(case, sim, folder, source)
    except Exception as exc:
        raise _fail(case, f"the re-run raised {type(exc).__name__}: {exc}") from exc
    check_outputs(case, folder, "re-run")
    paid = {
        r.key: n
        for r in case.records
        if outcomes.get(r.key) in FINAL_OUTCOMES and (n := _requests_for(log, before, r.marker))
    }
    if paid:
        raise _fail(case, f"the re-run paid again for records finished before: {paid}")


def _first_run(case: Case, sim: Simulator, folder: Path, source: Any) -> bool:
    """Run once; True when the run was (rightly) refused before any call."""
    unterminated = [r for r in case.records if r.quirk == "unterminated"]
    try:
        run_once(case, sim, folder, source)
    except InvalidInputError as exc:
        if case.duplicate_header or (case.source_kind == "csv" and unterminated):
            _check_refusal(case, sim, folder, exc, unterminated)
            return True
        raise _fail(case, f"the run raised InvalidInputError: {exc}") from exc
    except Exception as exc:
        raise _fail(case, f"the run raised {type(exc).__name__}: {exc}") from exc
    if case.duplicate_header:
        raise _fail(case, "a CSV with a duplicated header name was not refused")
    return False


def _check_refusal(
    case: Case, sim: Simulator, folder: Path, exc: InvalidInputError, unterminated: list[RecordPlan]
) -> None:
    written = [p.name for p in folder.iterdir() if p.name.startswith(("out", "bad"))]
    problems = []
    if written:
        problems.append(f"the refused run wrote {written}")
    if sim.stats().requests:
        problems.append(f"the refused run made {sim.stats().requests} requests")
    if not case.duplicate_header and not any(r.line in str(exc) for r in unterminated):
        problems.append(f"the refusal does not name the unterminated quote's line: {exc}")
    if problems:
        raise _fail(case, "; ".join(problems))
