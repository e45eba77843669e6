"""Sinks with one column per schema field: Parquet and SQLite, and the columns of a
schema (`columns_of`) the flat formats share; nested values as JSON text."""

from __future__ import annotations

import sqlite3
from typing import Any

from pydantic import BaseModel

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.flows.outputs.paths import Target
from prefect_openai_chat.flows.outputs.sink import RowNotStorable, Sink, json_text


def _column_type(spec: dict[str, Any]) -> str:
    """'string', 'integer', 'number', 'boolean' or 'json' for one JSON-schema property."""
    kinds = {spec.get("type")} | {s.get("type") for s in spec.get("anyOf", [])}
    kinds.discard(None)
    kinds.discard("null")
    if len(kinds) == 1:
        (kind,) = kinds
        if kind in ("string", "integer", "number", "boolean"):
            return str(kind)
    return "json"


def columns_of(schema: type[BaseModel] | None, key_column: str) -> dict[str, str]:
    """Column name -> kind for a schema, with the record key first.

    Columns carry the schema's field names (not their aliases): the keys of the rows
    (`model_dump()`), so every format holds the same keys.
    """
    columns = {key_column: "string"}
    if schema is not None:
        properties = schema.model_json_schema(by_alias=False).get("properties", {})
        for name, spec in properties.items():
            columns[name] = _column_type(spec)
    return columns


def cell_value(value: Any, kind: str) -> Any:
    """`value` as a cell of a `kind` column: nested values as JSON text."""
    if value is None:
        return None
    return json_text(value) if kind == "json" else value


_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "json": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def fits_column(cell: Any, kind: str) -> bool:
    """Whether a (storable) cell is of the Python type its column's kind takes."""
    if isinstance(cell, bool) and kind != "boolean":
        return False
    return isinstance(cell, _PYTHON_TYPES[kind])


def short_repr(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ParquetSink(Sink):
    """Columns from the schema; nested values as JSON text. Needs the `parquet` extra."""

    BATCH = 1000

    def __init__(self, path: Target, columns: dict[str, str]) -> None:
        super().__init__(path)
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise InvalidInputError(
                "writing .parquet needs pyarrow: pip install 'prefect-openai-chat[parquet]'"
            ) from exc
        kinds = {
            "string": pa.string(),
            "integer": pa.int64(),
            "number": pa.float64(),
            "boolean": pa.bool_(),
            "json": pa.string(),
        }
        self._pa = pa
        self._columns = columns
        self._schema = pa.schema([(name, kinds[kind]) for name, kind in columns.items()])
        self._writer = pq.ParquetWriter(str(self.tmp), self._schema)
        self._pending: list[dict[str, Any]] = []

    def _convert(self, row: dict[str, Any]) -> dict[str, Any]:
        cells = {n: cell_value(row.get(n), k) for n, k in self._columns.items()}
        for name, kind in self._columns.items():
            cell = cells[name]
            if cell is not None and not fits_column(cell, kind):
                raise RowNotStorable(
                    f"field {name!r}: {short_repr(cell)} does not fit a Parquet {kind} column"
                )
        return cells  # each cell is of its column's type: the flush cannot refuse it

    def _write(self, converted: dict[str, Any]) -> None:
        self._pending.append(converted)
        if len(self._pending) >= self.BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            table = self._pa.Table.from_pylist(self._pending, schema=self._schema)
            self._writer.write_table(table)
            self._pending = []

    def _close(self) -> None:
        self._flush()
        self._writer.close()


def check_sqlite_columns(columns: dict[str, str]) -> None:
    """Refuse columns SQLite would take as one: its names ignore ASCII case (`Name`, `name`).

    Called by the run's pre-flight too: a sharded night writes its output after paying.
    """
    seen: dict[str, str] = {}
    for name in columns:
        other = seen.setdefault("".join(c.lower() if c.isascii() else c for c in name), name)
        if other != name:
            raise InvalidInputError(
                f"the schema's fields {other!r} and {name!r} differ only in case, and SQLite"
                " column names ignore case: rename one, or write .jsonl, .parquet or .csv"
            )


class SqliteSink(Sink):
    """A `records` table with one column per schema field; nested values as JSON text."""

    _TYPES = {
        "string": "TEXT",
        "integer": "INTEGER",
        "number": "REAL",
        "boolean": "INTEGER",
        "json": "TEXT",
    }

    def __init__(self, path: Target, columns: dict[str, str]) -> None:
        check_sqlite_columns(columns)
        super().__init__(path)
        self._columns = columns
        self._db = sqlite3.connect(self.tmp)
        ddl = ", ".join(f'"{n}" {self._TYPES[k]}' for n, k in columns.items())
        self._db.execute(f"CREATE TABLE records ({ddl})")
        marks = ", ".join("?" * len(columns))
        names = ", ".join(f'"{n}"' for n in columns)
        self._insert = f"INSERT INTO records ({names}) VALUES ({marks})"

    def _convert(self, row: dict[str, Any]) -> list[Any]:
        cells = [cell_value(row.get(n), k) for n, k in self._columns.items()]
        for name, cell in zip(self._columns, cells, strict=True):
            if cell is not None and not isinstance(cell, str | int | float | bytes):
                raise RowNotStorable(
                    f"field {name!r}: a {type(cell).__name__} cannot be stored in SQLite"
                )
        return cells

    def _write(self, converted: list[Any]) -> None:
        self._db.execute(self._insert, converted)

    def _close(self) -> None:
        self._db.commit()
        self._db.close()
