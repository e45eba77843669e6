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

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic_core import PydanticSerializationError, to_jsonable_python

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.flows.csv_source import read_csv
from prefect_openai_chat.flows.frames import plain_value
from prefect_openai_chat.flows.key_index import KeyIndex
from prefect_openai_chat.flows.source_lines import (
    Line,
    SourceFile,
    SourceItem,
    is_blank,
    read_lines,
)
from prefect_openai_chat.storage import Location, is_url, local_path, locate
from prefect_openai_chat.storage.urls import storage_errors

Source = str | Path | Location | Iterable[Mapping[str, Any]]

MAX_DEPTH = 64
"""Records nested deeper than this (the record itself is level 1) are quarantined.

Real records rarely nest past ten levels. Prefect's parameter handling, pydantic and the
JSON encoders recurse a few Python frames per level and exhaust Python's recursion
limit (1,000 frames) a few hundred levels down (a record 400 levels deep failed the
whole run where 300 passed, measured in December 2026); 64 leaves them a wide margin,
with room for what wraps a record and for deeper call stacks.
"""


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
            yield from read_csv(path)
        else:
            yield from _read_jsonl(path)
        return
    for number, record in enumerate(source, start=1):
        yield _iterable_item(number, record)


def _file_of(source: str | Path | Location) -> SourceFile:
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
            return sum(1 for _ in read_csv(path))
        return sum(1 for line in read_lines(path) if not is_blank(line.text))
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


# --- JSONL -------------------------------------------------------------------------------------


def _read_jsonl(path: SourceFile) -> Iterator[SourceItem]:
    for line in read_lines(path):
        if not is_blank(line.text):
            yield _jsonl_item(line)


def _jsonl_item(line: Line) -> SourceItem:
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
