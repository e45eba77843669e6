"""The lines of a source file, decoded strictly, and the item every input line becomes.

Shared by the JSONL and CSV readers (`flows/sources.py`, `flows/csv_source.py`).

Example:
    >>> from prefect_openai_chat.flows.source_lines import SourceItem, is_blank
    >>> SourceItem(3, record={"id": 1}).key, is_blank(" \\t\\n")
    ('3', True)
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.storage import Location
from prefect_openai_chat.storage.urls import storage_errors

SourceFile = Path | Location  # a file a source is read from: local, or an object on a store


@dataclass(frozen=True)
class SourceItem:
    """One input line: its record, or why it is set aside (unreadable, a duplicate key)."""

    line: int
    record: dict[str, Any] | None = None
    error: str | None = None
    raw: str | dict[str, Any] | None = None  # the line as read, or a set-aside record
    key: str = ""  # the `key_field` value, else the line (JSONL) or record (CSV) number
    kind: str = "unreadable"  # why `record` is None: "unreadable" or "duplicate"

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", str(self.line))


_BLANK = " \t\n\r\x0b\x0c"  # what `bytes.strip` takes away


def is_blank(text: str) -> bool:
    """Whether a line holds nothing but the whitespace `bytes.strip` takes away."""
    return not text.strip(_BLANK)


@dataclass(frozen=True)
class Line:
    """One physical line of a source file, as text."""

    number: int
    text: str
    error: str | None  # why the bytes are not UTF-8, with the line and the byte offset


def read_lines(path: SourceFile) -> Iterator[Line]:
    """The file's lines, decoded strictly: a line that is not UTF-8 says where, and why.

    A file that cannot be read (gone, a disk error, a store that fails) is an
    `InvalidInputError`. An object on a store is streamed in chunks of `BLOCK_SIZE` (on
    S3, one GET for the whole pass).
    """
    if isinstance(path, Location):
        with storage_errors(f"source {str(path)!r} cannot be read"):
            yield from _decoded(path)
        return
    try:
        yield from _decoded(path)
    except OSError as exc:
        raise InvalidInputError(f"source {str(path)!r} cannot be read: {exc}") from exc


def _decoded(path: SourceFile) -> Iterator[Line]:
    offset = 0
    with path.open_read() if isinstance(path, Location) else path.open("rb") as handle:
        for number, data in enumerate(handle, start=1):
            start = offset
            offset += len(data)
            if number == 1 and data.startswith(codecs.BOM_UTF8):
                # files saved by Excel and some editors start with a byte order mark
                data, start = data[len(codecs.BOM_UTF8) :], start + len(codecs.BOM_UTF8)
            try:
                yield Line(number, data.decode("utf-8"), None)
            except UnicodeDecodeError as exc:
                yield Line(
                    number,
                    data.decode("utf-8", errors="backslashreplace"),
                    f"line {number} is not valid UTF-8: byte {data[exc.start]:#04x} at byte"
                    f" offset {start + exc.start} of the file ({exc.start} into the line);"
                    " fix the file's encoding (e.g. iconv -f latin1 -t utf-8)",
                )
