"""`Sink`: rows to one file, made visible atomically on a clean close; `JsonlSink`.

Each sink writes to a temporary file beside its target (`.<name>.tmp-<pid>`) and moves
it into place only when it is closed cleanly; every row passes `Sink.convert` first, so
a row the format cannot hold is refused (`RowNotStorable`) before anything is written."""

from __future__ import annotations

import json
import math
import os
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction.ledger import cap_raw_output
from prefect_openai_chat.extraction.storable import unstorable
from prefect_openai_chat.flows.outputs.commit import commit, fsync, temporary_path
from prefect_openai_chat.flows.outputs.paths import Target, journal_path
from prefect_openai_chat.storage import Location


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
            fsync(self.tmp)

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
