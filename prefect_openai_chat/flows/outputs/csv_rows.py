"""CSV output that reads back as written: `CsvSink` and `read_csv_rows`."""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from prefect_openai_chat.flows.outputs.paths import Target
from prefect_openai_chat.flows.outputs.sink import RowNotStorable, Sink
from prefect_openai_chat.flows.outputs.tables import cell_value, fits_column, short_repr


class CsvSink(Sink):
    """One column per schema field, a header row first; nested values as JSON text.

    Strict, so that the file reads back as written (`read_csv_rows`): booleans as
    `true`/`false`, floats as their shortest exact text, a null as an empty cell, rows
    ending in CRLF as RFC 4180 has them (with a bare LF ending, the csv module leaves a
    value holding a lone CR unquoted, and the row reads back as two). An
    empty string in a column that may also be null would read back as null, so such a
    row is refused (`RowNotStorable`, the record goes to quarantine with the reason);
    the quarantine (`strict = False`) writes it anyway.
    """

    def __init__(self, path: Target, columns: dict[str, str], nullable: set[str]) -> None:
        super().__init__(path)
        self._columns = columns
        self._nullable = nullable
        self._handle = self.tmp.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._handle, lineterminator="\r\n")
        self._writer.writerow(list(columns))

    def _convert(self, row: dict[str, Any]) -> list[str]:
        cells = []
        for name, kind in self._columns.items():
            value = cell_value(row.get(name), kind)
            if value is not None and not fits_column(value, kind):
                raise RowNotStorable(
                    f"field {name!r}: {short_repr(value)} does not fit a CSV {kind} column"
                )
            if value == "" and self.strict and (name in self._nullable or kind != "string"):
                raise RowNotStorable(
                    f"field {name!r}: an empty string would read back from CSV as null;"
                    " write this schema to .jsonl, .parquet or .sqlite instead"
                )
            cells.append(_csv_text(value))
        return cells

    def _write(self, converted: list[str]) -> None:
        self._writer.writerow(converted)

    def _close(self) -> None:
        self._handle.close()


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def nullable_columns(schema: type[BaseModel] | None) -> set[str]:
    """The schema's fields that may be null (a CSV cell cannot tell null from "")."""
    if schema is None:
        return set()
    properties = schema.model_json_schema(by_alias=False).get("properties", {})
    return {
        name
        for name, spec in properties.items()
        if any(option.get("type") == "null" for option in spec.get("anyOf", []))
    }


def read_csv_rows(
    path: str | Path, columns: dict[str, str], nullable: set[str] | None = None
) -> list[dict[str, Any]]:
    """The rows of a file `CsvSink` wrote, with their types back (the round trip): an
    empty cell is null, except in a string column that cannot be null (`nullable`: the
    columns that can, `nullable_columns(schema)`), where it is "".

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "rows.csv")
        >>> columns = {"_key": "string", "n": "integer", "x": "number", "tags": "json"}
        >>> row = {"_key": "a,1", "n": 3, "x": 0.1, "tags": ["p", "q"]}
        >>> with CsvSink(Path(path), columns, nullable=set()) as sink:
        ...     sink.write(row)
        >>> read_csv_rows(path, columns) == [row]
        True
    """
    with open(path, encoding="utf-8", newline="") as handle, _any_field_size():
        reader = csv.reader(handle)
        header = next(reader)
        can_be_null = nullable or set()
        return [
            {
                name: _from_csv(text, columns[name], name in can_be_null)
                for name, text in zip(header, line, strict=True)
            }
            for line in reader
        ]


@contextlib.contextmanager
def _any_field_size() -> Iterator[None]:
    """The csv module's field limit lifted while a file is read back: `CsvSink` writes a
    value of any size (the module's default, 131,072 characters, would refuse a long one)."""
    before = csv.field_size_limit(sys.maxsize)
    try:
        yield
    finally:
        csv.field_size_limit(before)


def _from_csv(text: str, kind: str, nullable: bool) -> Any:
    if text == "" and (nullable or kind != "string"):
        return None
    if kind == "integer":
        return int(text)
    if kind == "number":
        return float(text)
    if kind == "boolean":
        return text == "true"
    return json.loads(text) if kind == "json" else text
