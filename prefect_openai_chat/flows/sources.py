"""Read records from JSONL, CSV or an iterable, one at a time, never the whole file.

Every input line becomes exactly one `SourceItem`: a record, or the reason it could
not be read (a malformed JSONL line, a CSV row with the wrong number of fields), with
its line number, so that the flow can quarantine it and go on.

Example:
    >>> from prefect_openai_chat.flows.sources import read_records
    >>> [item.record for item in read_records([{"id": 1}, {"id": 2}])]
    [{'id': 1}, {'id': 2}]
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect_openai_chat.errors import InvalidInputError

Source = str | Path | Iterable[Mapping[str, Any]]


@dataclass(frozen=True)
class SourceItem:
    """One input line: its record, or why it could not be read."""

    line: int
    record: dict[str, Any] | None = None
    error: str | None = None
    raw: str | None = None


def check_source(source: Source) -> None:
    """Fail early and clearly when a source path is missing, unreadable or of an unknown kind."""
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise InvalidInputError(f"source {str(path)!r} does not exist or is not a file")
        if path.suffix.lower() not in (".jsonl", ".ndjson", ".csv"):
            raise InvalidInputError(
                f"source {str(path)!r}: use a .jsonl (or .ndjson) or .csv file, or pass an"
                " iterable of dicts"
            )
        try:
            with path.open("rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise InvalidInputError(f"source {str(path)!r} cannot be read: {exc}") from exc
    elif isinstance(source, Mapping) or not isinstance(source, Iterable):
        raise InvalidInputError(
            "source must be a .jsonl/.csv path or an iterable of dicts, got"
            f" {type(source).__name__}"
        )


def read_records(source: Source) -> Iterator[SourceItem]:
    """Yield one `SourceItem` per input line (1-based line numbers; CSV counts its header)."""
    if isinstance(source, str | Path):
        path = Path(source)
        if path.suffix.lower() == ".csv":
            yield from _read_csv(path)
        else:
            yield from _read_jsonl(path)
        return
    for number, record in enumerate(source, start=1):
        if isinstance(record, Mapping):
            yield SourceItem(number, record=dict(record))
        else:
            yield SourceItem(
                number, error=f"item {number} is a {type(record).__name__}, not a dict"
            )


def count_records(source: Source) -> int | None:
    """How many items `read_records` will yield, when that is cheap to know."""
    if isinstance(source, str | Path):
        path = Path(source)
        with path.open("rb") as handle:
            lines = sum(1 for line in handle if line.strip())
        return max(lines - 1, 0) if path.suffix.lower() == ".csv" else lines
    try:
        return len(source)  # type: ignore[arg-type]
    except TypeError:
        return None


def _read_jsonl(path: Path) -> Iterator[SourceItem]:
    # utf-8-sig: files saved by Excel and some editors start with a byte order mark
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield SourceItem(
                    number,
                    error=f"malformed JSON on line {number}: {exc.msg}",
                    raw=line.rstrip("\n"),
                )
                continue
            if not isinstance(record, dict):
                yield SourceItem(
                    number, error=f"line {number} is JSON but not an object", raw=line.rstrip("\n")
                )
                continue
            yield SourceItem(number, record=record)


def _read_csv(path: Path) -> Iterator[SourceItem]:
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            return
        width = len(header)
        for row in reader:
            number = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != width:
                yield SourceItem(
                    number,
                    error=f"CSV line {number} has {len(row)} fields, the header has {width}",
                    raw=",".join(row),
                )
                continue
            yield SourceItem(number, record=dict(zip(header, row, strict=True)))
