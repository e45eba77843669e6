"""Read a CSV source one record at a time (RFC 4180, read strictly), never the whole file.

The header is the first non-blank record; then one item per non-blank record, at the
line it starts on and keyed by its number (1 for the first after the header). A quoted
field may legitimately span lines, so a record may cover several lines: they make one
item. A broken record (a quote never closed, or closed and followed by something else
than a comma) gives one quarantined item per non-blank physical line it covers (see
`flows/sources.py`).

Example:
    >>> import tempfile, pathlib
    >>> from prefect_openai_chat.flows.csv_source import read_csv
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "in.csv"
    >>> _ = path.write_text('id,text\\n1,"two\\nlines"\\n')
    >>> [(item.line, item.key, item.record) for item in read_csv(path)]
    [(2, '1', {'id': '1', 'text': 'two\\nlines'})]
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.flows.source_lines import (
    Line,
    SourceFile,
    SourceItem,
    is_blank,
    read_lines,
)

MAX_CSV_RECORD_CHARS = 16 * 1024 * 1024
"""A CSV record longer than this (16 Mi characters) is quarantined: in practice a quote
never closed. It is far more than any model's context window holds, and it bounds the
memory a stray quote can make the reader hold."""

_QUOTED_TEXT = re.compile(r'[^"]*(?:""[^"]*)*')  # a quoted field's text, up to its closing quote


def _line_end(text: str) -> tuple[str, str]:
    """A physical line's text and its line ending (`\\r\\n`, `\\n`, a last `\\r`, or none).

    A `\\r` anywhere else is data: kept in its field as it is.
    """
    if text.endswith("\r\n"):
        return text[:-2], "\r\n"
    if text.endswith(("\n", "\r")):
        return text[:-1], text[-1]
    return text, ""


class _CsvRecord:
    """One CSV record being read, line by line: RFC 4180, the fields `csv.reader(strict=True)`
    gives (the property tests compare them), except that a `\\r` that does not end a line
    is data.

    The `csv` module is not used: it cannot say which line a quoted field starts on, it
    stops at a `\\r` inside an unquoted field, and its field size limit (128 KiB unless
    raised) is one value for the whole process.
    """

    def __init__(self, cut_from: int = 0) -> None:
        self.lines: list[Line] = []
        self.fields: list[str] = []
        self.open: list[str] | None = [] if cut_from else None  # a quoted field going on
        self.quote_line = cut_from  # where the last quoted field started
        self.cut_from = cut_from  # the over-long quoted field this record goes on with
        self.error = self._inside(cut_from) if cut_from else None
        self.size = 0

    def add(self, line: Line) -> bool:
        """Read one more physical line; True when the record ends with it."""
        self.lines.append(line)
        self.size += len(line.text)
        try:
            return self._parse(*_line_end(line.text), line.number)
        except Exception as exc:  # never expected; the record, not the run, pays for it
            self.error = self.error or f"CSV line {line.number} cannot be read: {exc!r}"
            return True

    def _parse(self, text: str, end: str, number: int) -> bool:
        pos: int | None = 0
        if self.open is not None:
            pos = self._quoted(text, 0, end)
        while pos is not None:
            if text.startswith('"', pos):
                self.open, self.quote_line = [], number
                pos = self._quoted(text, pos + 1, end)
                continue
            comma = text.find(",", pos)
            self.fields.append(text[pos:] if comma < 0 else text[pos:comma])
            if comma < 0:
                return True
            pos = comma + 1
        return self.open is None

    def _quoted(self, text: str, pos: int, end: str) -> int | None:
        """Read the open quoted field from `pos`: where the next field starts, or None when
        the record ends on this line or the field goes on on the next."""
        assert self.open is not None
        stop = _QUOTED_TEXT.match(text, pos).end()  # type: ignore[union-attr]
        self.open.append(text[pos:stop])
        if stop == len(text):
            self.open.append(end)
            return None
        self.fields.append("".join(self.open).replace('""', '"'))
        self.open = None
        after = stop + 1  # past the closing quote: a comma, or the line's end
        if after == len(text):
            return None
        if text[after] == ",":
            return after + 1
        self._misplaced_quote(text[after], number=self.lines[-1].number)
        return None

    def _misplaced_quote(self, char: str, number: int) -> None:
        fix = 'a quote inside a quoted field is written twice ("")'
        if self.quote_line == number:
            problem = (
                f"CSV line {number}: a quoted field is closed and followed by {char!r}"
                " instead of a comma or the line's end"
            )
        else:
            problem = (
                f"CSV line {self.quote_line}: the quoted field that starts here is not"
                f" closed on its line: it runs on to line {number}, where a quote closes it"
                f" and {char!r} follows instead of a comma"
            )
        self.error = self.error or f"{problem}; {fix}"

    def unterminated(self) -> _CsvRecord:
        """The record at the end of the file, inside a quoted field: an error."""
        self.error = self.error or (
            f"CSV line {self.quote_line}: the quoted field that starts here is never closed"
            f" (the file ends inside it, {self._span()}); close the quote, and write a quote"
            ' inside a quoted field twice ("")'
        )
        return self

    def too_long(self) -> _CsvRecord:
        """The record over `MAX_CSV_RECORD_CHARS` inside a quoted field: an error."""
        self.error = self.error or (
            f"CSV line {self.quote_line}: the quoted field that starts here runs on past"
            f" {MAX_CSV_RECORD_CHARS:,} characters ({self._span()}), so its quote is"
            " probably never closed; close the quote"
        )
        return self

    def rest(self) -> _CsvRecord:
        """What follows a record cut for its length: still inside the same quoted field."""
        return _CsvRecord(cut_from=self.cut_from or self.quote_line)

    def _span(self) -> str:
        first, last = self.lines[0].number, self.lines[-1].number
        return f"lines {first}-{last}" if last > first else f"line {first}"

    @staticmethod
    def _inside(quote_line: int) -> str:
        return (
            f"inside the quoted field that starts on line {quote_line}, which is not closed"
            f" where it should be; fix line {quote_line}"
        )

    def reason_for(self, number: int) -> str:
        """The quarantine reason of physical line `number` of a broken record."""
        assert self.error is not None
        main = self.cut_from or self.quote_line or self.lines[0].number
        if number == main:
            return self.error
        if number > main:
            return f"CSV line {number} is {self._inside(main)}"
        return f"CSV line {number} starts a record that line {main} breaks; see line {main}"


def _csv_records(lines: Iterator[Line]) -> Iterator[_CsvRecord]:
    """The file's records, broken ones included; a quoted field past the size limit is
    cut into records that are all errors, so memory stays bounded."""
    record = _CsvRecord()
    for line in lines:
        if record.add(line):
            yield record
            record = _CsvRecord()
        elif record.size > MAX_CSV_RECORD_CHARS:
            yield record.too_long()
            record = record.rest()
    if record.lines:
        yield record.unterminated()


def read_csv(path: SourceFile) -> Iterator[SourceItem]:
    """The CSV's items, keyed by their number (1 for the first after the header); each
    item's `line` is the physical line where its record starts, to find it in the file."""
    records = _csv_records(read_lines(path))
    header = _csv_header(path, records)
    items = (item for record in records for item in _csv_items(record, header))
    for number, item in enumerate(items, start=1):
        yield replace(item, key=str(number))


def _csv_header(path: SourceFile, records: Iterator[_CsvRecord]) -> list[str]:
    """The first non-blank record's fields; InvalidInputError when they cannot name columns."""
    for record in records:
        if record.error is None and not any(field.strip() for field in record.fields):
            continue
        where = f"source {str(path)!r}: the CSV header"
        errors = [line.error for line in record.lines if line.error] + [record.error]
        if error := next((e for e in errors if e), None):
            raise InvalidInputError(f"{where}: {error}")
        header = record.fields
        if any("\r" in name for name in header):
            raise InvalidInputError(
                f"{where} holds a carriage return (\\r) that does not end a line: is the"
                " file saved with old Mac line endings (\\r alone)? Save it with \\n or"
                " \\r\\n line endings"
            )
        if duplicated := _duplicates(header):
            raise InvalidInputError(
                f"{where} names {duplicated}: a record would keep only the last of those"
                " columns; rename them so that every column has its own name"
            )
        return header
    return []


def _duplicates(header: list[str]) -> str:
    """`'text' twice (columns 2 and 3)` for each repeated name; empty when none is."""
    columns: dict[str, list[int]] = {}
    for column, name in enumerate(header, start=1):
        columns.setdefault(name, []).append(column)
    return "; ".join(
        f"{name!r} {len(at)} times (columns {', '.join(map(str, at[:-1]))} and {at[-1]})"
        for name, at in columns.items()
        if len(at) > 1
    ).replace(" 2 times", " twice")


def _csv_items(record: _CsvRecord, header: list[str]) -> Iterator[SourceItem]:
    """The items of one record: one, or one per physical line when the record is broken."""
    if record.error is not None:
        for line in record.lines:
            if not is_blank(line.text):
                raw = _line_end(line.text)[0]
                yield SourceItem(line.number, error=record.reason_for(line.number), raw=raw)
        return
    fields = record.fields
    if not any(field.strip() for field in fields) or not header:
        return
    number = record.lines[0].number  # where the record starts
    raw = _line_end("".join(line.text for line in record.lines))[0]
    if error := next((line.error for line in record.lines if line.error), None):
        yield SourceItem(number, error=error, raw=raw)
    elif len(fields) != len(header):
        yield SourceItem(
            number,
            error=f"CSV line {number} has {len(fields)} fields, the header has {len(header)}",
            raw=raw,
        )
    else:
        yield SourceItem(number, record=dict(zip(header, fields, strict=True)))
