"""Write valid rows (JSONL, CSV, Parquet or SQLite, by extension) and quarantined records.

Each sink writes to a temporary file beside its target (`.<name>.tmp-<pid>`) and moves
it into place only when the run completes, so a crashed run never leaves half a file
and a re-run never duplicates rows. `open_outputs` moves a run's output and quarantine
as one step: a journal naming both moves is written first, and a run that finds a
journal left by a crash finishes those moves before it starts (`recover_outputs`),
then removes temporaries of processes that are gone.

A target on object storage (`s3://...`, any fsspec URL: a `Location`) is written to a
local temporary file the same way, then published by `storage.commit_objects`
(temporary objects, a journal object, copies); there is no lock there (see
`hold_outputs`).

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

import csv
import json
import math
import os
import re
import socket
import sqlite3
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import BaseModel

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction.ledger import cap_raw_output
from prefect_openai_chat.extraction.storable import unstorable
from prefect_openai_chat.storage import (
    Location,
    commit_objects,
    is_url,
    journal_for,
    local_path,
    locate,
    recover_objects,
)
from prefect_openai_chat.storage.urls import storage_errors
from prefect_openai_chat.tasks import run_logger

if sys.platform != "win32":
    import fcntl

SUFFIXES = (".jsonl", ".ndjson", ".csv", ".parquet", ".sqlite", ".db")

Target = Path | Location  # where a sink's rows end: a local file, or an object on a store


def check_writable(
    path: str | Path | Location, what: str, storage_options: dict[str, Any] | None = None
) -> Target:
    """The target as a `Path` (a `Location` for a URL), after checking its kind and that
    its folder (its bucket) can be written."""
    if isinstance(path, Location) or is_url(path):
        return _check_object(
            path if isinstance(path, Location) else str(path), what, storage_options
        )
    target = local_path(path)
    _check_suffix(target.suffix, what, str(target))
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


def _check_suffix(suffix: str, what: str, name: str) -> None:
    if suffix.lower() not in SUFFIXES:
        raise InvalidInputError(
            f"{what} {name!r}: use one of {', '.join(SUFFIXES)} as the file extension"
        )


def _check_object(
    path: str | Location, what: str, storage_options: dict[str, Any] | None
) -> Location:
    """An output on a store: its kind, and that a probe object beside it can be written."""
    target = path if isinstance(path, Location) else locate(path, storage_options)
    _check_suffix(target.suffix, what, str(target))
    with storage_errors(f"{what} {str(target)!r} cannot be written"):
        if target.fs.isdir(target.path):
            raise InvalidInputError(f"{what} {str(target)!r} is a folder (a prefix)")
        probe = target.sibling(f".{target.name}.probe-{uuid.uuid4().hex}")
        probe.write_bytes(b"")
        probe.remove()
    return target


def _same_file(a: Target, b: Target) -> bool:
    if isinstance(a, Location) or isinstance(b, Location):  # URLs are normalised
        return isinstance(a, Location) and isinstance(b, Location) and a.url == b.url
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links too
    except OSError:
        return False


def lock_path(target: Path) -> Path:
    """The lock a run writing `target` holds for its whole life: `.<name>.lock` beside it."""
    return target.with_name(f".{target.name}.lock")


_TEMPORARY = re.compile(r"^\.(.+)\.(?:tmp|probe)-[0-9a-f]+(?:-journal|-wal|-shm)?$")
_CHOSEN = ("output", "quarantine", "cache")  # the roles a caller chooses a path for


def _files_of(role: str, path: Target) -> list[tuple[str, Target]]:
    """`path` and the files a run writes beside it in `role`, as messages name them."""
    files: list[tuple[str, Target]] = [(role, path)]
    if role in ("output", "quarantine") and isinstance(path, Path):
        files.append((f"{role}'s lock file", lock_path(path)))
    if role == "output":
        files.append(("output's commit journal", journal_path(path)))
    return files


def _clash(a: Target, b: Target) -> bool:
    """Whether `a` is `b`, or a temporary file a run writes for `b` (or the other way)."""
    if _same_file(a, b):
        return True
    for one, other in ((a, b), (b, a)):
        match = _TEMPORARY.match(one.name)
        if match:
            name = match.group(1)
            base = one.sibling(name) if isinstance(one, Location) else one.with_name(name)
            if _same_file(base, other):
                return True
    return False


def _where(path: Target) -> str:
    """The file as messages spell it in full: the URL, or the resolved path."""
    return str(path) if isinstance(path, Location) else str(path.resolve())


def _inside(path: Target, folder: Path) -> bool:
    if isinstance(path, Location):
        return False  # a part folder is local
    resolved = path.resolve()
    return resolved == folder.resolve() or folder.resolve() in resolved.parents


def check_distinct(roles: dict[str, Target | None], folders: dict[str, Path] | None = None) -> None:
    """Refuse two roles on one file: writing one would overwrite the other (or the input).

    `roles` maps a role ("source", "output", "quarantine", "cache ...") to its file; each
    counts with the files written beside it (lock, commit journal, temporaries).
    `folders` are folders a run writes into (a sharded run's parts): no file may be one
    or lie inside. Paths are compared after resolving `.`, `..`, relative spellings,
    symbolic and hard links; URLs as their filesystem normalises them (`S3://b/x.jsonl`
    and `s3://b/x.jsonl` are one object).

    Example:
        >>> from pathlib import Path
        >>> try:
        ...     check_distinct({"output": Path("a.jsonl"), "cache": Path("./a.jsonl")})
        ... except InvalidInputError as exc:
        ...     print(str(exc).split(",")[0])
        output and cache must be different files
    """
    files = [
        (role, label, path)
        for role, base in roles.items()
        if base is not None
        for label, path in _files_of(role, base)
    ]
    for i, (role, first, a) in enumerate(files):
        for other, second, b in files[i + 1 :]:
            if role != other and _clash(a, b):
                spelled = str(a) if str(a) == str(b) else f"{str(a)!r} and {str(b)!r}"
                fix = next(r for r in (other, role, "output") if r.split(" (")[0] in _CHOSEN)
                raise InvalidInputError(
                    f"{first} and {second} must be different files, both are {spelled}"
                    f" ({_where(a)}): the run would overwrite its {first}; choose another"
                    f" {fix.split(' (')[0]} path"
                )
    for folder_role, folder in (folders or {}).items():
        for _, label, path in files:
            if _inside(path, folder):
                raise InvalidInputError(
                    f"{label} {str(path)!r} is inside {folder_role} {str(folder)!r}, which the"
                    f" run writes and removes: choose a {label.split(' (')[0]} path outside it"
                )


# --- one run per output: a lock held for the run's whole life --------------------------------

_HELD: ContextVar[frozenset[Path | str]] = ContextVar(
    "prefect_openai_chat_held_outputs", default=frozenset()
)
_OBJECTS_HELD: set[str] = set()  # URLs a run of this process writes (no lock on a store)
_OBJECTS_LOCK = threading.Lock()


def _hold_object(role: str, target: Location) -> str:
    """Refuse `target` when another run of this process writes it; the key to release.

    Runs on other processes or hosts cannot be seen: an object store has no lock, so
    the deployment's concurrency limit keeps them apart (docs/scale-out.md).
    """
    with _OBJECTS_LOCK:
        if target.url in _OBJECTS_HELD:
            raise InvalidInputError(
                f"another run of this process is writing {role} {target.url!r}; two runs on"
                f" one {role} would replace each other's files: wait for that run to finish,"
                f" or choose another {role} URL"
            )
        _OBJECTS_HELD.add(target.url)
    return target.url


def _release_object(key: str) -> None:
    with _OBJECTS_LOCK:
        _OBJECTS_HELD.discard(key)


def _one_kind(output: Target, quarantine: Target) -> None:
    """Refuse an output and a quarantine of which one is local and the other on a store:
    they are published as one step, which needs one kind of commit."""
    if isinstance(output, Location) != isinstance(quarantine, Location):
        raise InvalidInputError(
            f"output {str(output)!r} and quarantine {str(quarantine)!r}: put both on local"
            " paths or both on object storage (URLs); they are published as one step"
        )


def _holder(fd: int) -> str:
    """Who holds a lock file, as its holder wrote it (`host:pid`), for messages."""
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
    except OSError:
        return "unknown"


def _lock(role: str, target: Path) -> int | None:
    """Take `target`'s lock without waiting; None where the OS has no `flock`.

    The kernel drops the lock when the process ends, however it ends: a crash never
    leaves a stale lock (the file it leaves is locked by nobody).
    """
    if sys.platform == "win32":  # pragma: no cover - no flock there
        return None
    path = lock_path(target)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise InvalidInputError(
                f"another run is writing {role} {str(target)!r} (process {holder}, which holds"
                f" {path}); two runs on one {role} would replace each other's files: wait"
                f" for that run to finish, or choose another {role} path"
            ) from None
        except OSError as exc:  # a file system without locks: run unguarded, not refused
            os.close(fd)
            run_logger().warning(
                "cannot lock %s (%s): a second run on %s would not be refused", path, exc, target
            )
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:  # not a file its last holder removed meanwhile
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{socket.gethostname()}:{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)


@contextmanager
def hold_outputs(output: Target, quarantine: Target) -> Iterator[None]:
    """Hold the locks of `output` and `quarantine` while the block runs, or refuse at once.

    A second run on either file gets an `InvalidInputError` naming it before it writes
    or calls anything (it does not wait: it would only overwrite the first run's result
    later, paying again). Re-entrant within one run (its context): a sharded run holds
    its outputs while its shards run and while it merges them. On object storage only
    the runs of this process are seen (`_hold_object`).
    """
    _one_kind(output, quarantine)
    held = _HELD.get()
    taken: list[tuple[Path | str, int | None]] = []
    try:
        for role, target in (("output", output), ("quarantine", quarantine)):
            key = target.url if isinstance(target, Location) else lock_path(target).resolve()
            if key in held or key in {k for k, _ in taken}:
                continue
            if isinstance(target, Location):
                taken.append((_hold_object(role, target), None))
            else:
                taken.append((key, _lock(role, target)))
        token = _HELD.set(held | {k for k, _ in taken})
        try:
            yield
        finally:
            _HELD.reset(token)
    finally:
        for key, fd in reversed(taken):
            if isinstance(key, str):
                _release_object(key)
            elif fd is not None:
                key.unlink(missing_ok=True)  # removed while held: see the inode check in _lock
                os.close(fd)


def temporary_path(path: Target) -> Path:
    """Where this process writes `path` before moving it into place: `.<name>.tmp-<pid>`
    beside it; for an object on a store, in a local temporary folder of its own."""
    if isinstance(path, Location):
        folder = Path(tempfile.mkdtemp(prefix="prefect-openai-chat-"))
        return folder / f".{path.name}.tmp-{os.getpid()}"
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _fsync(path: Path, directory: bool = False) -> None:
    """Flush a file (or a folder's entries) to disk; a no-op where the OS cannot."""
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class RowNotStorable(InvalidInputError):
    """A row a sink cannot hold, and why; nothing of it was written.

    The run sends that record to quarantine with this reason instead of failing.
    """


class Sink:
    """Rows to one file, made visible atomically on a clean close.

    Every row passes `convert` before it is written: a row breaking the storable-value
    rule (`extraction.storable`: 64-bit integers, finite floats), or one this format
    cannot convert, raises `RowNotStorable` there, so a row that `write` accepted can
    no longer fail later (at a Parquet flush). `strict = False` (the quarantine) keeps
    such values as text instead of refusing the row. `capped` names text fields cut to
    `RAW_OUTPUT_LIMIT` bytes on the way in.
    """

    capped: tuple[str, ...] = ()
    strict = True

    def __init__(self, path: Target) -> None:
        self.path = path
        self.tmp = temporary_path(path)
        for leftover in (self.tmp, *_companions(self.tmp)):  # an earlier run with our pid
            leftover.unlink(missing_ok=True)
        self.rows = 0
        self._closed = False

    def convert(self, row: dict[str, Any]) -> Any:
        """The row as this format stores it; `RowNotStorable` says why it cannot be."""
        for name in self.capped:
            if isinstance(row.get(name), str):
                row = {**row, name: cap_raw_output(row[name])}
        if self.strict:
            reason = unstorable(row)
            if reason is not None:
                raise RowNotStorable(reason)
        try:
            return self._convert(row)
        except RowNotStorable:
            raise
        except Exception as exc:  # whatever the format's conversion raises, for this row
            raise RowNotStorable(
                f"the {self.path.suffix} output cannot hold this row: {type(exc).__name__}: {exc}"
            ) from exc

    def write(self, row: dict[str, Any]) -> None:
        """Append one row, or raise `RowNotStorable` having written nothing of it."""
        self._write(self.convert(row))
        self.rows += 1

    def _convert(self, row: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _write(self, converted: Any) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the temporary file and flush it to disk (it is not in place yet)."""
        if not self._closed:
            self._closed = True
            self._close()
            _fsync(self.tmp)

    def discard(self) -> None:
        """Drop the temporary file; the target stays as it was."""
        try:
            if not self._closed:
                self._closed = True
                self._close()
        finally:
            for leftover in (self.tmp, *_companions(self.tmp)):
                leftover.unlink(missing_ok=True)
            if isinstance(self.path, Location):  # the local folder made for it
                with suppress(OSError):
                    self.tmp.parent.rmdir()

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
            if isinstance(self.path, Location):
                commit([self], journal_path(self.path))
            else:
                os.replace(self.tmp, self.path)
        else:
            self.discard()


def _companions(tmp: Path) -> list[Path]:
    """SQLite's own files beside a temporary database."""
    return [tmp.with_name(tmp.name + suffix) for suffix in ("-journal", "-wal", "-shm")]


class JsonlSink(Sink):
    """One JSON object per line, strict JSON (no `NaN` or `Infinity` tokens)."""

    def __init__(self, path: Target) -> None:
        super().__init__(path)
        self._handle = self.tmp.open("w", encoding="utf-8")

    def _convert(self, row: dict[str, Any]) -> str:
        return json_text(row) + "\n"

    def _write(self, converted: str) -> None:
        self._handle.write(converted)

    def _close(self) -> None:
        self._handle.close()


def json_text(value: Any) -> str:
    """Strict JSON for `value`: a non-finite float (checked out of output rows before)
    is written as the text "nan" / "inf" rather than as a token JSON readers reject."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), ensure_ascii=False, default=str, allow_nan=False)


def _finite(value: Any) -> Any:
    """A copy of `value` with every non-finite float as its text."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


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


def _cell(value: Any, kind: str) -> Any:
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


def _fits(cell: Any, kind: str) -> bool:
    """Whether a (storable) cell is of the Python type its column's kind takes."""
    if isinstance(cell, bool) and kind != "boolean":
        return False
    return isinstance(cell, _PYTHON_TYPES[kind])


def _short(value: Any, limit: int = 60) -> str:
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
        cells = {n: _cell(row.get(n), k) for n, k in self._columns.items()}
        for name, kind in self._columns.items():
            cell = cells[name]
            if cell is not None and not _fits(cell, kind):
                raise RowNotStorable(
                    f"field {name!r}: {_short(cell)} does not fit a Parquet {kind} column"
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
        super().__init__(path)
        self._columns = columns
        self._db = sqlite3.connect(self.tmp)
        ddl = ", ".join(f'"{n}" {self._TYPES[k]}' for n, k in columns.items())
        self._db.execute(f"CREATE TABLE records ({ddl})")
        marks = ", ".join("?" * len(columns))
        names = ", ".join(f'"{n}"' for n in columns)
        self._insert = f"INSERT INTO records ({names}) VALUES ({marks})"

    def _convert(self, row: dict[str, Any]) -> list[Any]:
        cells = [_cell(row.get(n), k) for n, k in self._columns.items()]
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


class CsvSink(Sink):
    """One column per schema field, a header row first; nested values as JSON text.

    Strict, so that the file reads back as written (`read_csv_rows`): booleans as
    `true`/`false`, floats as their shortest exact text, a null as an empty cell. An
    empty string in a column that may also be null would read back as null, so such a
    row is refused (`RowNotStorable`, the record goes to quarantine with the reason);
    the quarantine (`strict = False`) writes it anyway.
    """

    def __init__(self, path: Target, columns: dict[str, str], nullable: set[str]) -> None:
        super().__init__(path)
        self._columns = columns
        self._nullable = nullable
        self._handle = self.tmp.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._handle, lineterminator="\n")
        self._writer.writerow(list(columns))

    def _convert(self, row: dict[str, Any]) -> list[str]:
        cells = []
        for name, kind in self._columns.items():
            value = _cell(row.get(name), kind)
            if value is not None and not _fits(value, kind):
                raise RowNotStorable(
                    f"field {name!r}: {_short(value)} does not fit a CSV {kind} column"
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
        >>> with open_sink(path, columns=columns) as sink:
        ...     sink.write(row)
        >>> read_csv_rows(path, columns) == [row]
        True
    """
    with open(path, encoding="utf-8", newline="") as handle:
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


def open_sink(
    path: str | Path | Location,
    schema: type[BaseModel] | None = None,
    key_column: str = "_key",
    columns: dict[str, str] | None = None,
) -> Sink:
    """The sink for `path`'s extension: JSONL, CSV, Parquet or SQLite.

    Flat formats get `columns` (name -> kind), else the schema's fields after `key_column`.
    """
    target = path if isinstance(path, Location) else Path(path)
    suffix = target.suffix.lower()
    if suffix == ".parquet":
        return ParquetSink(target, columns or columns_of(schema, key_column))
    if suffix in (".sqlite", ".db"):
        return SqliteSink(target, columns or columns_of(schema, key_column))
    if suffix == ".csv":
        return CsvSink(target, columns or columns_of(schema, key_column), nullable_columns(schema))
    return JsonlSink(target)


# Every quarantine row, in every format; `record` is JSON text in Parquet and SQLite.
QUARANTINE_COLUMNS = {
    "line": "integer",
    "key": "string",
    "reason": "string",
    "outcome": "string",
    "attempts": "integer",
    "record": "json",
    "last_raw_output": "string",
}


def open_quarantine(path: str | Path | Location) -> Sink:
    """The quarantine sink: full rows in every format, raw outputs capped."""
    sink = open_sink(path, columns=QUARANTINE_COLUMNS)
    sink.capped = ("last_raw_output",)
    sink.strict = False  # the input record as it came, never refused
    return sink


# --- committing the output and the quarantine as one step ------------------------------------


def journal_path(output: Target) -> Target:
    """The commit journal of a run writing `output`: `.<name>.commit` beside it."""
    if isinstance(output, Location):
        return journal_for(output)
    return output.with_name(f".{output.name}.commit")


def _alive(pid: int) -> bool:
    """Whether another process with this id runs (our own id counts as gone: not yet written)."""
    if pid == os.getpid():
        return False
    if os.name == "nt":  # pragma: no cover - os.kill would end the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _stale_temporaries(target: Path) -> list[Path]:
    pattern = re.compile(
        rf"^\.{re.escape(target.name)}\.(?:tmp|probe)-(\d+)(?:-journal|-wal|-shm)?$"
    )
    found = []
    if target.parent.is_dir():
        for entry in target.parent.iterdir():
            match = pattern.match(entry.name)
            if match and not _alive(int(match.group(1))):
                found.append(entry)
    return sorted(found)


def recover_outputs(output: Target, quarantine: Target) -> list[str]:
    """Finish a commit a crash interrupted, and remove temporaries of dead processes.

    Run before a run writes `output` and `quarantine` (`open_outputs` does); returns what
    it did, one sentence each. It holds both files' locks (`hold_outputs`), so a live
    run's journal and temporaries, even of this process, are never taken for a dead one's:
    while another run writes them it refuses. On object storage `storage.recover_objects`
    does the same with copies: every temporary object left beside them is removed.
    """
    with hold_outputs(output, quarantine):
        if isinstance(output, Location) and isinstance(quarantine, Location):
            return recover_objects([output, quarantine], journal_for(output))
        return _recover(_local(output), _local(quarantine))


def _recover(output: Path, quarantine: Path) -> list[str]:
    done: list[str] = []
    journal = _local(journal_path(output))
    if journal.is_file():
        try:
            plan = json.loads(journal.read_text(encoding="utf-8"))
            plan["moves"] = [(str(tmp), str(target)) for tmp, target in plan["moves"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise RuntimeError(
                f"the commit journal {journal} cannot be read ({exc}); move each temporary"
                " file it names into place by hand, or delete it to keep the files as they are"
            ) from exc
        if not _alive(int(plan.get("pid", 0))):
            for tmp, target in plan["moves"]:
                if Path(tmp).exists():
                    os.replace(tmp, target)
                    done.append(f"moved {tmp} to {target} (a commit interrupted by a crash)")
            for folder in {Path(target).parent for _, target in plan["moves"]}:
                _fsync(folder, directory=True)
            journal.unlink()
    for target in (output, quarantine, journal):
        for stale in _stale_temporaries(target):
            stale.unlink(missing_ok=True)
            done.append(f"removed {stale}, left by a process that is gone")
    return done


def commit(sinks: list[Sink], journal: Target) -> None:
    """Move every sink's file into place as one step, through a journal written first.

    A crash before the journal is in place leaves every target as it was; a crash after
    leaves the journal, and the next `recover_outputs` finishes the moves. On object
    storage the moves are uploads and copies (`storage.commit_objects`).
    """
    if isinstance(journal, Location):
        _commit_objects(sinks, journal)
        return
    targets = [_local(sink.path) for sink in sinks]
    try:
        for sink in sinks:
            sink.close()
        moves = [
            [str(s.tmp.absolute()), str(t.absolute())] for s, t in zip(sinks, targets, strict=True)
        ]
        staged = temporary_path(journal)
        staged.write_text(json.dumps({"pid": os.getpid(), "moves": moves}), encoding="utf-8")
        _fsync(staged)
        os.replace(staged, journal)
        _fsync(journal.parent, directory=True)
    except BaseException:
        for sink in sinks:
            sink.discard()
        temporary_path(journal).unlink(missing_ok=True)
        raise
    for sink, target in zip(sinks, targets, strict=True):
        os.replace(sink.tmp, target)
    for folder in {target.parent for target in targets}:
        _fsync(folder, directory=True)
    journal.unlink()


def _local(target: Target) -> Path:
    """A target known to be local (the pair was checked by `hold_outputs`)."""
    if isinstance(target, Location):
        raise InvalidInputError(f"{target} is on object storage, its pair is local")
    return target


def _commit_objects(sinks: list[Sink], journal: Location) -> None:
    """Publish every sink's local file onto its object, then drop the local files."""
    try:
        for sink in sinks:
            sink.close()
        uploads = [(sink.tmp, sink.path) for sink in sinks if isinstance(sink.path, Location)]
        commit_objects(uploads, journal, run_id=uuid.uuid4().hex)
    finally:
        for sink in sinks:
            sink.discard()


@contextmanager
def open_outputs(
    output: Target, quarantine: Target, schema: type[BaseModel] | None = None
) -> Iterator[tuple[Sink, Sink]]:
    """The output and quarantine sinks of a run, moved into place together on a clean exit.

    Holds both files' locks from the start to the end of the commit (`hold_outputs`): a
    second run on either is refused. First finishes what a crashed run left (see
    `recover_outputs`). On an exception both temporaries are dropped and both targets
    stay as they were.
    """
    with hold_outputs(output, quarantine):
        for line in recover_outputs(output, quarantine):
            run_logger().warning("%s", line)
        rows = open_sink(output, schema)
        try:
            bad = open_quarantine(quarantine)
        except BaseException:
            rows.discard()
            raise
        try:
            yield rows, bad
        except BaseException:
            rows.discard()
            bad.discard()
            raise
        commit([rows, bad], journal_path(output))
