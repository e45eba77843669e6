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

import codecs
import contextlib
import csv
import inspect
import json
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from prefect import Flow

from prefect_openai_chat.errors import InvalidInputError

Source = str | Path | Iterable[Mapping[str, Any]]


@dataclass(frozen=True)
class SourceItem:
    """One input line: its record, or why it is set aside (unreadable, a duplicate key)."""

    line: int
    record: dict[str, Any] | None = None
    error: str | None = None
    raw: str | dict[str, Any] | None = None  # the line as read, or a set-aside record
    key: str = ""  # the `key_field` value, else the line number (set by `read_records`)
    kind: str = "unreadable"  # why `record` is None: "unreadable" or "duplicate"

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", str(self.line))


class Keys:
    """The key of every item read so far: the `key_field` value, else the line number.

    A record whose `key_field` is missing, null or blank gets its line number. A key seen
    before sets the later record aside (kind "duplicate", never sent, quarantined with
    the line of the first), so the output never holds two rows with one key.
    """

    def __init__(self, field: str | None) -> None:
        self.field = field
        self.first_line: dict[str, int] = {}
        self.duplicates = 0
        self.missing = 0

    def assign(self, item: SourceItem) -> SourceItem:
        """The item with its key; a set-aside item when the key was seen before."""
        if not self.field or item.record is None:
            return item  # unreadable items keep their line number and claim no key
        key = item.key
        value = item.record.get(self.field)
        if value is None or (isinstance(value, str) and not value.strip()):
            self.missing += 1
        else:
            key = str(value)
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


@dataclass(frozen=True)
class _Line:
    number: int
    text: str
    error: str | None  # why the bytes are not UTF-8, with the line and the byte offset


def _lines(path: Path) -> Iterator[_Line]:
    """The file's lines, decoded strictly: a line that is not UTF-8 says where, and why."""
    offset = 0
    with path.open("rb") as handle:
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


def _read_jsonl(path: Path) -> Iterator[SourceItem]:
    for line in _lines(path):
        number, text = line.number, line.text
        if not text.strip():
            continue
        if line.error:
            yield SourceItem(number, error=line.error, raw=text.rstrip("\r\n"))
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            yield SourceItem(
                number,
                error=f"malformed JSON on line {number}: {exc.msg}",
                raw=text.rstrip("\r\n"),
            )
            continue
        if not isinstance(record, dict):
            yield SourceItem(
                number, error=f"line {number} is JSON but not an object", raw=text.rstrip("\r\n")
            )
            continue
        yield SourceItem(number, record=record)


def _read_csv(path: Path) -> Iterator[SourceItem]:
    bad_lines: dict[int, str] = {}

    def texts() -> Iterator[str]:
        for line in _lines(path):
            if line.error:
                bad_lines[line.number] = line.error
            yield line.text

    reader = csv.reader(texts())
    header = next(reader, None)
    if not header:
        return
    last = reader.line_num
    header_errors = [bad_lines.pop(n) for n in range(1, last + 1) if n in bad_lines]
    if header_errors:
        raise InvalidInputError(f"source {str(path)!r}: the CSV header: {header_errors[0]}")
    width = len(header)
    for row in reader:
        number, first = reader.line_num, last + 1
        last = number
        errors = [bad_lines.pop(n) for n in range(first, number + 1) if n in bad_lines]
        if not any(cell.strip() for cell in row):
            continue
        if errors:
            yield SourceItem(number, error=errors[0], raw=",".join(row))
            continue
        if len(row) != width:
            yield SourceItem(
                number,
                error=f"CSV line {number} has {len(row)} fields, the header has {width}",
                raw=",".join(row),
            )
            continue
        yield SourceItem(number, record=dict(zip(header, row, strict=True)))


# --- a flow whose `source` may be a generator ------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")


def materialise_source(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call's arguments with an iterable `source` (a generator too) turned into a list."""
    try:
        bound = inspect.signature(fn).bind_partial(*args, **kwargs)
    except TypeError:
        return args, kwargs  # Prefect reports the bad call in its own words
    value = bound.arguments.get("source")
    if isinstance(value, Iterable) and not isinstance(
        value, str | bytes | Path | Mapping | list | tuple
    ):
        bound.arguments["source"] = list(value)
    return bound.args, bound.kwargs


class SourceFlow(Flow[P, R]):
    """A Prefect flow whose `source` parameter may be any iterable, a generator included.

    Prefect serialises a flow's parameters for its API before the flow body runs, which
    would use up a generator: the body would see no record and report success. This
    flow makes a list of such a source first.
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
