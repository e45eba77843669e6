"""Read records from JSONL, CSV or an iterable, one at a time, never the whole file.

Every input line becomes exactly one `SourceItem`: a record, or the reason it could
not be read (a malformed JSONL line, a CSV row with the wrong number of fields, a
record nested too deep or holding a lone surrogate), with its line number, so that the
flow can quarantine it and go on. Only a file that cannot be read at all (or a CSV
whose header is unusable) fails the run, with an `InvalidInputError`.

How physical lines map to items:

* JSONL: one item per non-blank line.
* CSV: the header is the first non-blank record; then one item per non-blank record,
  at the line it starts on and keyed by its number (1 for the first after the header).
  A quoted field may legitimately span lines, so a record may cover several lines:
  they make one item. A record that is broken (a quote
  never closed, or closed and followed by something else than a comma, RFC 4180 read
  strictly) gives one quarantined item per non-blank physical line it covers: the line
  where the quoted field starts says what is wrong, every other line says which line
  to fix. So every physical line ends exactly once, and nothing a stray quote
  swallowed is ever sent as part of another record.
* An iterable: one item per element.

Example:
    >>> from prefect_openai_chat.flows.sources import read_records
    >>> [item.record for item in read_records([{"id": 1}, {"id": 2}])]
    [{'id': 1}, {'id': 2}]
"""

from __future__ import annotations

import codecs
import contextlib
import inspect
import json
import math
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from prefect import Flow
from pydantic_core import PydanticSerializationError, to_jsonable_python

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.flows.frames import frame_kind, frame_records, plain_value
from prefect_openai_chat.flows.key_index import KeyIndex
from prefect_openai_chat.storage import Location, is_url, local_path, locate, masked_options
from prefect_openai_chat.storage.urls import storage_errors

Source = str | Path | Location | Iterable[Mapping[str, Any]]
_File = Path | Location  # a file a source is read from: local, or an object on a store

MAX_DEPTH = 64
"""Records nested deeper than this (the record itself is level 1) are quarantined.

Real records rarely nest past ten levels. Prefect's parameter handling, pydantic and the
JSON encoders recurse a few Python frames per level and exhaust Python's recursion
limit (1,000 frames) a few hundred levels down (a record 400 levels deep failed the
whole run where 300 passed, measured in December 2026); 64 leaves them a wide margin,
with room for what wraps a record and for deeper call stacks.
"""

MAX_CSV_RECORD_CHARS = 16 * 1024 * 1024
"""A CSV record longer than this (16 Mi characters) is quarantined: in practice a quote
never closed. It is far more than any model's context window holds, and it bounds the
memory a stray quote can make the reader hold."""


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


class Keys:
    """The key of every item read so far: the `key_field` value, else the item's own key
    (a JSONL line number, a CSV record number).

    A record whose `key_field` is missing, null or blank keeps its own key. A key seen
    before sets the later record aside (kind "duplicate", never sent, quarantined with
    the line of the first), so the output never holds two rows with one key.
    `first_line` maps each key that is not its line number to its line (a `KeyIndex`:
    bounded memory whatever the source's size).
    """

    def __init__(self, field: str | None) -> None:
        self.field = field
        self.first_line = KeyIndex()
        self.duplicates = 0
        self.missing = 0

    def assign(self, item: SourceItem) -> SourceItem:
        """The item with its key; a set-aside item when the key was seen before."""
        if not self.field or item.record is None:
            if not self.field and item.key != str(item.line):  # a CSV record's number
                self.first_line[item.key] = item.line
            return item  # unreadable items keep their own key and claim no other
        key = item.key
        if has_key(item.record, self.field):
            key = str(item.record[self.field])
        else:
            self.missing += 1
        first = self.first_line.setdefault(key, item.line)
        if first == item.line:
            return replace(item, key=key)
        self.duplicates += 1
        return replace(
            item,
            record=None,
            raw=item.record,
            error=f"duplicate key {key!r}: the record on line {first} has the same key and is"
            " the one kept",
            key=key,
            kind="duplicate",
        )


def has_key(record: Mapping[str, Any], key_field: str | None) -> bool:
    """Whether `record` holds a usable `key_field` value (not missing, null or blank)."""
    value = record.get(key_field) if key_field else None
    return value is not None and not (isinstance(value, str) and not value.strip())


def check_source(source: Source, storage_options: Mapping[str, Any] | None = None) -> Source:
    """Fail early and clearly when a source path is missing, unreadable or of an unknown kind.

    Returns the source to read: a URL (`s3://...`, any fsspec URL, with `storage_options`)
    as a `Location`, a `file://` URL as a local path, anything else as it was given.
    """
    if is_url(source):
        return _check_object(str(source), storage_options)
    if isinstance(source, str | Path):
        path = local_path(source)
        if not path.is_file():
            raise InvalidInputError(f"source {str(path)!r} does not exist or is not a file")
        _check_suffix(path.suffix, str(path))
        try:
            with path.open("rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise InvalidInputError(f"source {str(path)!r} cannot be read: {exc}") from exc
        return source if path == Path(source) else path  # a file:// URL as its path
    if isinstance(source, Mapping) or not isinstance(source, Iterable):
        raise InvalidInputError(
            "source must be a .jsonl/.csv path or URL, or an iterable of dicts, got"
            f" {type(source).__name__}"
        )
    return source


def _check_suffix(suffix: str, name: str) -> None:
    if suffix.lower() not in (".jsonl", ".ndjson", ".csv"):
        raise InvalidInputError(
            f"source {name!r}: use a .jsonl (or .ndjson) or .csv file, or pass an iterable of dicts"
        )


def _check_object(url: str, storage_options: Mapping[str, Any] | None) -> Location:
    """A source on object storage, checked: its kind, that it is there, that it reads."""
    location = locate(url, storage_options)
    _check_suffix(location.suffix, url)
    with storage_errors(f"source {url!r} cannot be read"):
        if not location.is_file():
            raise InvalidInputError(
                f"source {url!r} does not exist or is not a file (is the bucket and the"
                " object's name right, and may these credentials list it?)"
            )
        with location.open_read(block_size=64 * 1024) as handle:
            handle.read(1)
    return location


def read_records(source: Source, keys: Keys | None = None) -> Iterator[SourceItem]:
    """Yield one `SourceItem` per input line (1-based line numbers; CSV counts its header).

    With `keys`, every item gets its key and a repeated key sets the record aside.
    """
    items = _read(source)
    if keys is None:
        yield from items
    else:
        yield from map(keys.assign, items)


def _read(source: Source) -> Iterator[SourceItem]:
    if isinstance(source, str | Path | Location):
        path = _file_of(source)
        if path.suffix.lower() == ".csv":
            yield from _read_csv(path)
        else:
            yield from _read_jsonl(path)
        return
    for number, record in enumerate(source, start=1):
        yield _iterable_item(number, record)


def _file_of(source: str | Path | Location) -> _File:
    """The file a path or URL names (a URL without `storage_options`: check_source first)."""
    if isinstance(source, Location):
        return source
    return locate(str(source)) if is_url(source) else local_path(source)


def count_records(source: Source) -> int | None:
    """How many items `read_records` will yield, when that is cheap to know.

    A JSONL file counts its non-blank lines; a CSV file is read the way the reader
    reads it (a quoted field may span lines), so the two always agree. An object on a
    store is streamed once more for this (a second read, in chunks, never held whole).
    """
    if isinstance(source, str | Path | Location):
        path = _file_of(source)
        if path.suffix.lower() == ".csv":
            return sum(1 for _ in _read_csv(path))
        return sum(1 for line in _lines(path) if not _blank(line.text))
    try:
        return len(source)  # type: ignore[arg-type]
    except TypeError:
        return None


# --- records that are JSON data -------------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")


def record_problem(record: Mapping[Any, Any], other_values: bool = False) -> str | None:
    """Why `record` is not JSON data a run can carry, else None.

    JSON data is a dict with string keys whose values are strings, finite numbers,
    booleans, null, lists (or tuples) and such dicts, nested at most `MAX_DEPTH` levels,
    with no lone surrogate (half of a UTF-16 pair, which no UTF-8 text can hold).
    With `other_values`, values of other types (a date, a Decimal) pass: `as_json_data`
    converts them. The answer reads after "item 3 holds " or "line 3 holds ".
    """
    stack: list[tuple[Any, int, _Path]] = [(record, 1, None)]
    while stack:
        value, depth, path = stack.pop()
        kind = type(value)
        if kind is str:
            if found := _SURROGATE.search(value):
                return _surrogate(found.group(), path)
        elif kind is int or kind is bool or value is None:
            continue
        elif isinstance(value, Mapping | list | tuple):
            if depth > MAX_DEPTH:
                return (
                    f"values nested deeper than {MAX_DEPTH} levels (at {_where(path)}):"
                    f" records nested deeper than {MAX_DEPTH} levels are refused; flatten it"
                )
            pairs: Iterable[tuple[Any, Any]] = enumerate(value)
            if isinstance(value, Mapping):
                if problem := _keys_problem(value, path):
                    return problem
                pairs = value.items()
            stack.extend((inner, depth + 1, (path, key)) for key, inner in pairs)
        elif isinstance(value, float) and not math.isfinite(value):
            return f"{value!r} at {_where(path)}, which is not a JSON number; use null or a string"
        elif not isinstance(value, str | int | float) and not other_values:
            return (  # bool and None are ints or were seen above
                f"a {kind.__name__} at {_where(path)}, which is not JSON data: a record"
                " holds strings, numbers, booleans, null, lists and dicts; convert it first"
                " (e.g. str() or .isoformat())"
            )
    return None


_Path = tuple[Any, Any] | None  # (the parent's path, the key), None for the record itself


def _keys_problem(value: Mapping[Any, Any], path: _Path) -> str | None:
    for key in value:
        if not isinstance(key, str):
            return (
                f"the key {key!r} ({type(key).__name__}) in {_where(path)}: the keys of a"
                " record and of its dicts must be strings"
            )
        if found := _SURROGATE.search(key):
            return _surrogate(found.group(), path)
    return None


def _surrogate(char: str, path: _Path) -> str:
    return (
        f"a lone surrogate ({char.encode('unicode_escape').decode()}) in {_where(path)}: an"
        " invalid Unicode escape, half of a UTF-16 pair, which no UTF-8 text can hold;"
        " fix the text where the record was written (emoji cut in half?)"
    )


def _where(path: _Path) -> str:
    """`['meta'][0]`, or "the record"; long paths are cut."""
    keys: list[Any] = []
    while path is not None:
        path, key = path
        keys.append(key)
    if not keys:
        return "the record"
    keys.reverse()
    return "".join(f"[{key!r}]" for key in keys[:6]) + ("[…]" if len(keys) > 6 else "")


def _iterable_item(number: int, record: Any) -> SourceItem:
    """Item `number` of an iterable source: the record, or why it is set aside."""
    if isinstance(record, _SetAside):
        return SourceItem(number, error=record.error, raw=record.raw)
    if not isinstance(record, Mapping):
        return SourceItem(number, error=f"item {number} is a {type(record).__name__}, not a dict")
    item = _as_item(number, record)
    if isinstance(item, str):
        return SourceItem(number, error=item, raw=_shown(record))
    return SourceItem(number, record=item)


def as_json_data(record: Mapping[Any, Any]) -> dict[str, Any]:
    """`record` as JSON data: dates, datetimes, Decimals, UUIDs and enums (a database row,
    a DataFrame's `to_dict("records")`) as pydantic writes them in JSON, e.g. a date as
    "2024-01-02", numpy scalars as Python numbers and `pd.NA` / `NaT` as null (a NaN
    float stays refused here: JSON has none; a data frame source maps it to null first);
    raises ValueError naming what is not JSON data and cannot be made so.

    Example:
        >>> import datetime
        >>> as_json_data({"id": 1, "day": datetime.date(2024, 1, 2)})
        {'id': 1, 'day': '2024-01-02'}
    """
    strict = record_problem(record)
    if strict is None:
        return dict(record)
    if problem := record_problem(record, other_values=True):
        raise ValueError(problem)
    try:
        converted: dict[str, Any] = to_jsonable_python(record, fallback=_plain_or_refuse)
    except (PydanticSerializationError, TypeError):
        raise ValueError(strict) from None
    if record_problem(converted) is not None:
        raise ValueError(strict)
    return converted


def _plain_or_refuse(value: Any) -> Any:
    """What pydantic cannot write itself: a numpy scalar or array, pd.NA, NaT; else TypeError."""
    plain = plain_value(value)
    if plain is value:
        raise TypeError(f"a {type(value).__name__} is not JSON data")
    return plain


def _as_item(number: int, record: Mapping[Any, Any]) -> dict[str, Any] | str:
    """Item `number` as JSON data, or why it cannot be (never an exception)."""
    try:
        return as_json_data(record)
    except ValueError as exc:
        return f"item {number} holds {exc}"
    except Exception as exc:  # a mapping that cannot be read costs that item, not the run
        return f"item {number} cannot be read: {type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class _SetAside:
    """An item of an iterable source that is not JSON data, as a flow's `source` holds it.

    Prefect walks, validates and records a flow's parameters before its body runs, and
    fails the run on an item nested a few hundred levels deep; the flow body never sees
    the item itself, only why it is quarantined and how it is shown.
    """

    error: str
    raw: str


def set_aside(source: list[Any]) -> list[Any]:
    """`source` with each dict as JSON data (`as_json_data`), or replaced by a `_SetAside`."""
    replaced: list[Any] | None = None
    for number, value in enumerate(source, start=1):
        if isinstance(value, Mapping) and record_problem(value) is not None:
            item = _as_item(number, value)
            replaced = replaced or list(source)
            replaced[number - 1] = _SetAside(item, _shown(value)) if isinstance(item, str) else item
    return source if replaced is None else replaced


def _shown(record: Any) -> str:
    """A set-aside item as JSON text a sink can write: escapes for what is not UTF-8,
    `repr` for what is not JSON."""
    try:
        return json.dumps(record, ensure_ascii=True, default=repr)
    except (ValueError, TypeError, RecursionError):
        return f"<a {type(record).__name__} too deep or too odd to show>"


# --- lines of a file ---------------------------------------------------------------------------

_BLANK = " \t\n\r\x0b\x0c"  # what `bytes.strip` takes away


def _blank(text: str) -> bool:
    return not text.strip(_BLANK)


@dataclass(frozen=True)
class _Line:
    number: int
    text: str
    error: str | None  # why the bytes are not UTF-8, with the line and the byte offset


def _lines(path: _File) -> Iterator[_Line]:
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


def _decoded(path: _File) -> Iterator[_Line]:
    offset = 0
    with path.open_read() if isinstance(path, Location) else path.open("rb") as handle:
        for number, data in enumerate(handle, start=1):
            start = offset
            offset += len(data)
            if number == 1 and data.startswith(codecs.BOM_UTF8):
                # files saved by Excel and some editors start with a byte order mark
                data, start = data[len(codecs.BOM_UTF8) :], start + len(codecs.BOM_UTF8)
            try:
                yield _Line(number, data.decode("utf-8"), None)
            except UnicodeDecodeError as exc:
                yield _Line(
                    number,
                    data.decode("utf-8", errors="backslashreplace"),
                    f"line {number} is not valid UTF-8: byte {data[exc.start]:#04x} at byte"
                    f" offset {start + exc.start} of the file ({exc.start} into the line);"
                    " fix the file's encoding (e.g. iconv -f latin1 -t utf-8)",
                )


# --- JSONL -------------------------------------------------------------------------------------


def _read_jsonl(path: _File) -> Iterator[SourceItem]:
    for line in _lines(path):
        if not _blank(line.text):
            yield _jsonl_item(line)


def _jsonl_item(line: _Line) -> SourceItem:
    """One non-blank JSONL line: its record, or why it is quarantined (never an exception)."""
    number, raw = line.number, line.text.rstrip("\r\n")
    if line.error:
        return SourceItem(number, error=line.error, raw=raw)
    try:
        record = json.loads(line.text)
    except json.JSONDecodeError as exc:
        return SourceItem(number, error=f"malformed JSON on line {number}: {exc.msg}", raw=raw)
    except RecursionError:
        error = (
            f"line {number} holds values nested deeper than {MAX_DEPTH} levels (too deep for"
            f" the JSON parser): records nested deeper than {MAX_DEPTH} levels are refused;"
            " flatten it"
        )
        return SourceItem(number, error=error, raw=raw)
    except Exception as exc:  # e.g. an integer of more than 4,300 digits
        return SourceItem(
            number, error=f"line {number} cannot be read: {type(exc).__name__}: {exc}", raw=raw
        )
    if not isinstance(record, dict):
        return SourceItem(number, error=f"line {number} is JSON but not an object", raw=raw)
    if problem := record_problem(record):
        return SourceItem(number, error=f"line {number} holds {problem}", raw=raw)
    return SourceItem(number, record=record)


# --- CSV ---------------------------------------------------------------------------------------

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
        self.lines: list[_Line] = []
        self.fields: list[str] = []
        self.open: list[str] | None = [] if cut_from else None  # a quoted field going on
        self.quote_line = cut_from  # where the last quoted field started
        self.cut_from = cut_from  # the over-long quoted field this record goes on with
        self.error = self._inside(cut_from) if cut_from else None
        self.size = 0

    def add(self, line: _Line) -> bool:
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


def _csv_records(lines: Iterator[_Line]) -> Iterator[_CsvRecord]:
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


def _read_csv(path: _File) -> Iterator[SourceItem]:
    """The CSV's items, keyed by their number (1 for the first after the header); each
    item's `line` is the physical line where its record starts, to find it in the file."""
    records = _csv_records(_lines(path))
    header = _csv_header(path, records)
    items = (item for record in records for item in _csv_items(record, header))
    for number, item in enumerate(items, start=1):
        yield replace(item, key=str(number))


def _csv_header(path: _File, records: Iterator[_CsvRecord]) -> list[str]:
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
            if not _blank(line.text):
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


# --- a flow whose `source` may be a generator ------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")


def materialise_source(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call's arguments with an iterable `source` (a generator too) or a data frame
    (`frames.frame_records`: pandas, polars, pyarrow) turned into a list of records, its
    dicts that are not JSON data set aside (`set_aside`)."""
    try:
        bound = inspect.signature(fn).bind_partial(*args, **kwargs)
    except TypeError:
        return args, kwargs  # Prefect reports the bad call in its own words
    value = bound.arguments.get("source")
    if frame_kind(value) is not None:  # a DataFrame or an Arrow table: its rows
        bound.arguments["source"] = set_aside(list(frame_records(value)))
    elif isinstance(value, Iterable) and not isinstance(value, str | bytes | Path | Mapping):
        bound.arguments["source"] = set_aside(value if isinstance(value, list) else list(value))
    return bound.args, bound.kwargs


class SourceFlow(Flow[P, R]):
    """A Prefect flow whose `source` parameter may be any iterable, a generator included.

    Prefect serialises a flow's parameters for its API before the flow body runs, which
    would use up a generator: the body would see no record and report success, and
    would fail on a data frame. This flow makes a list of records of such a source
    first, and sets aside the items Prefect's parameter handling would fail the run on
    (see `set_aside`).
    """

    if not TYPE_CHECKING:  # type checkers keep `Flow.__call__`'s precise overloads

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            with _schema_parameter_allowed():
                super().__init__(*args, **kwargs)

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            args, kwargs = materialise_source(self.fn, args, kwargs)
            return super().__call__(*args, **kwargs)

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """As `Flow.validate_parameters`, without pydantic's warning about `schema`."""
        with _schema_parameter_allowed():
            return super().validate_parameters(parameters)

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """As `Flow.serialize_parameters` (what the run's page shows), with the credentials
        of `storage_options` masked (`storage.masked_options`)."""
        serialized = super().serialize_parameters(parameters)
        if "storage_options" in parameters:
            serialized["storage_options"] = masked_options(parameters["storage_options"])
        for name in ("run", "flat"):  # `RunOptions`, or the deprecated flat keywords
            given = parameters.get(name)
            options = (
                given.get("storage_options")
                if isinstance(given, dict)
                else getattr(given, "storage_options", None)
            )
            if options is not None and isinstance(serialized.get(name), dict):
                serialized[name] = {
                    **serialized[name],
                    "storage_options": masked_options(options),
                }
        return serialized

    def with_options(self, **options: Any) -> SourceFlow[P, R]:
        """As `Flow.with_options`, keeping the generator-safe call."""
        with _schema_parameter_allowed():
            copy = super().with_options(**options)
        copy.__class__ = type(self)
        return copy  # type: ignore[return-value]


@contextlib.contextmanager
def _schema_parameter_allowed() -> Iterator[None]:
    """Prefect validates a flow's parameters through a pydantic model it builds when the
    flow is made and at each call; a parameter called `schema`, as users expect, makes
    pydantic warn that it shadows an attribute of `BaseModel`. That is harmless here."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message='Field name "schema" in ".*" shadows', category=UserWarning
        )
        yield


def source_flow(**options: Any) -> Callable[[Callable[P, R]], SourceFlow[P, R]]:
    """Like `@flow(**options)`, for a flow with a `source` parameter (see `SourceFlow`)."""

    def wrap(fn: Callable[P, R]) -> SourceFlow[P, R]:
        return SourceFlow(fn=fn, **options)

    return wrap
