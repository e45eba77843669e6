"""An ETL step's data frame as a source: one record per row, values as a data engineer means them.

`extract_records(source=df)` takes a pandas or polars `DataFrame`, or a pyarrow `Table`,
`RecordBatch` or `RecordBatchReader` (a polars `LazyFrame` is collected first). The rows
are read a slice at a time (pyarrow `to_batches`, polars `iter_slices`, pandas in
chunks) into dicts whose values are plain Python:

* a missing value (`None`, `NaN`, `NaT`, `pd.NA`, an Arrow null) becomes null: in a data
  frame NaN is how a missing number is written (in a JSONL line or a plain dict a NaN is
  refused instead, since JSON has no NaN);
* numpy scalars become Python numbers (`np.int64(3)` -> 3), numpy arrays lists;
* a pandas `Timestamp` becomes a `datetime` (kept as text with its nanoseconds when it has
  any), so it reaches the record as ISO 8601 text like every date (see `as_json_data`).

None of pandas, polars or pyarrow is imported here: an object is recognised by the module
its type comes from, so a run without them never loads them.

Example:
    >>> frame_kind([{"id": 1}]) is None
    True
    >>> plain_value(float("nan")) is None, plain_value([1.5, float("nan")])
    (True, [1.5, None])
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from pydantic_core import PydanticSerializationError, to_jsonable_python

from prefect_openai_chat.errors import InvalidInputError

ROWS_PER_SLICE = 10_000  # rows turned into dicts at a time
_FRAMES = {
    ("pandas", "DataFrame"): "pandas",
    ("polars", "DataFrame"): "polars",
    ("polars", "LazyFrame"): "polars-lazy",
    ("pyarrow", "Table"): "arrow",
    ("pyarrow", "RecordBatch"): "arrow",
    ("pyarrow", "RecordBatchReader"): "arrow-reader",
}
_MISSING = {("pandas", "NaTType"), ("pandas", "NAType")}
_JSON_TYPES = {str, int, float, bool, list, dict}
_DEEPEST = 80  # values nested deeper are left as they are: the record's depth check refuses them


def _origin(kind: type) -> tuple[str, str]:
    return kind.__module__.partition(".")[0], kind.__name__


def frame_kind(value: Any) -> str | None:
    """Which kind of data frame `value` is ("pandas", "polars", "arrow", ...), or None.

    Looks at the type's module and name (and its bases'), never imports a library.
    """
    for kind in type(value).__mro__:
        if found := _FRAMES.get(_origin(kind)):
            return found
    return None


def frame_records(frame: Any) -> Iterator[dict[str, Any]]:
    """The rows of `frame` (see `frame_kind`) as dicts of plain values, a slice at a time."""
    kind = frame_kind(frame)
    if kind == "polars-lazy":
        frame, kind = frame.collect(), "polars"
    _check_columns(kind, frame)
    if kind == "pandas":
        slices: Iterator[list[dict[Any, Any]]] = (
            frame.iloc[start : start + ROWS_PER_SLICE].to_dict("records")
            for start in range(0, len(frame), ROWS_PER_SLICE)
        )
    elif kind == "polars":
        slices = (part.to_dicts() for part in frame.iter_slices(ROWS_PER_SLICE))
    elif kind == "arrow":
        slices = (batch.to_pylist() for batch in frame.to_batches(max_chunksize=ROWS_PER_SLICE))
    elif kind == "arrow-reader":
        slices = (batch.to_pylist() for batch in frame)
    else:
        raise InvalidInputError(f"source: a {type(frame).__name__} is not a data frame")
    for rows in slices:
        for row in rows:
            yield {name: _json_value(plain_value(value)) for name, value in row.items()}


def _json_value(value: Any) -> Any:
    """A date, datetime, Decimal, ... as JSON text now, the way `as_json_data` would write
    it: the record is then JSON data, checked once instead of converted later."""
    if value is None or type(value) in _JSON_TYPES:
        return value
    try:
        return to_jsonable_python(value)
    except (PydanticSerializationError, TypeError, ValueError):
        return value  # the record's check says what it is; that row is quarantined


def _check_columns(kind: str | None, frame: Any) -> None:
    """Column names must be distinct strings: they become the records' field names."""
    names = list(frame.schema.names if kind and kind.startswith("arrow") else frame.columns)
    odd = [name for name in names if not isinstance(name, str)]
    if odd:
        raise InvalidInputError(
            f"source: the data frame's column names must be strings, {odd[0]!r}"
            f" ({type(odd[0]).__name__}) is not; rename the columns (e.g."
            " df.columns = df.columns.map(str))"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidInputError(
            f"source: the data frame has more than one column named {repeated[0]!r}; a record"
            " would keep only one of them: rename them"
        )


def plain_value(value: Any, depth: int = 0) -> Any:
    """`value` as plain Python: missing values None, numpy scalars Python numbers, ...

    Example:
        >>> plain_value({"a": (1, None)})
        {'a': [1, None]}
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else float(value)  # np.float64 too
    kind = type(value)
    origin = _origin(kind)
    if origin in _MISSING:
        return None
    if depth > _DEEPEST:
        return value
    if isinstance(value, dict):
        return {key: plain_value(inner, depth + 1) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [plain_value(inner, depth + 1) for inner in value]
    if origin[0] == "numpy":
        return _numpy_value(value, depth)
    if origin == ("pandas", "Timestamp"):
        return value.isoformat() if value.nanosecond else value.to_pydatetime()
    return value


def _numpy_value(value: Any, depth: int) -> Any:
    """A numpy scalar or array as Python: `.tolist()`; a date or time stays text-exact."""
    if type(value).__name__ in ("datetime64", "timedelta64"):
        return None if value != value else str(value)  # NaT is not equal to itself
    return plain_value(value.tolist(), depth + 1)
