"""Write valid rows (JSONL, Parquet or SQLite, by extension) and quarantined records (JSONL).

Each sink writes to a temporary file beside its target and moves it into place only
when the run completes, so a crashed run never leaves half a file and a re-run
never duplicates rows.

Example:
    >>> import tempfile, os
    >>> from prefect_openai_chat.flows.sinks import open_sink
    >>> path = os.path.join(tempfile.mkdtemp(), "rows.jsonl")
    >>> with open_sink(path) as sink:
    ...     sink.write({"id": 1})
    >>> open(path).read()
    '{"id": 1}\\n'
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import BaseModel

from prefect_openai_chat.errors import InvalidInputError

SUFFIXES = (".jsonl", ".ndjson", ".parquet", ".sqlite", ".db")


def check_writable(path: str | Path, what: str) -> Path:
    """The path as a `Path`, after checking its kind and that its folder can be written."""
    target = Path(path)
    if target.suffix.lower() not in SUFFIXES:
        raise InvalidInputError(
            f"{what} {str(target)!r}: use one of {', '.join(SUFFIXES)} as the file extension"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        probe = target.parent / f".{target.name}.probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise InvalidInputError(f"{what} {str(target)!r} cannot be written: {exc}") from exc
    if target.exists() and target.is_dir():
        raise InvalidInputError(f"{what} {str(target)!r} is a directory")
    return target


class Sink:
    """Rows to one file, made visible atomically on a clean close."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self.rows = 0

    def write(self, row: dict[str, Any]) -> None:
        """Append one row."""
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close()
        if kind is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


class JsonlSink(Sink):
    """One JSON object per line."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._handle = self.tmp.open("w", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self._handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        self.rows += 1

    def _close(self) -> None:
        self._handle.close()


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
    """Column name -> kind for a schema, with the record key first."""
    columns = {key_column: "string"}
    if schema is not None:
        for name, spec in schema.model_json_schema().get("properties", {}).items():
            columns[name] = _column_type(spec)
    return columns


def _cell(value: Any, kind: str) -> Any:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, default=str) if kind == "json" else value


class ParquetSink(Sink):
    """Columns from the schema; nested values as JSON text. Needs the `parquet` extra."""

    BATCH = 1000

    def __init__(self, path: Path, columns: dict[str, str]) -> None:
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

    def write(self, row: dict[str, Any]) -> None:
        self._pending.append({n: _cell(row.get(n), k) for n, k in self._columns.items()})
        self.rows += 1
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


class SqliteSink(Sink):
    """A `records` table with one column per schema field; nested values as JSON text."""

    _TYPES = {
        "string": "TEXT",
        "integer": "INTEGER",
        "number": "REAL",
        "boolean": "INTEGER",
        "json": "TEXT",
    }

    def __init__(self, path: Path, columns: dict[str, str]) -> None:
        super().__init__(path)
        self._columns = columns
        self._db = sqlite3.connect(self.tmp)
        ddl = ", ".join(f'"{n}" {self._TYPES[k]}' for n, k in columns.items())
        self._db.execute(f"CREATE TABLE records ({ddl})")
        marks = ", ".join("?" * len(columns))
        names = ", ".join(f'"{n}"' for n in columns)
        self._insert = f"INSERT INTO records ({names}) VALUES ({marks})"

    def write(self, row: dict[str, Any]) -> None:
        self._db.execute(self._insert, [_cell(row.get(n), k) for n, k in self._columns.items()])
        self.rows += 1

    def _close(self) -> None:
        self._db.commit()
        self._db.close()


def open_sink(
    path: str | Path, schema: type[BaseModel] | None = None, key_column: str = "_key"
) -> Sink:
    """The sink for `path`'s extension: JSONL, Parquet or SQLite."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == ".parquet":
        return ParquetSink(target, columns_of(schema, key_column))
    if suffix in (".sqlite", ".db"):
        return SqliteSink(target, columns_of(schema, key_column))
    return JsonlSink(target)
