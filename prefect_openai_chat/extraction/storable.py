"""The one rule for values every output format can hold: JSONL, Parquet and SQLite alike.

An integer must fit a signed 64-bit integer (Parquet's `int64`, SQLite's `INTEGER`), a
float must be finite (strict JSON has no `NaN` or `Infinity`) and a string (a key too)
must hold no lone surrogate (no UTF-8 text can: `surrogates`), anywhere in the value,
nested too. A value that breaks the rule is not silently changed: the extraction treats
it as a validation problem, and a sink refuses the row with `RowNotStorable`.

Example:
    >>> unstorable({"count": 99999999999999999999})
    "field 'count': 99999999999999999999 does not fit a 64-bit integer column"
    >>> unstorable({"items": [{"price": float("nan")}]})
    "field 'items[0].price': nan is not a finite number (NaN and Infinity cannot be stored)"
    >>> print(unstorable({"name": "Zo\\ud83d"}))
    field 'name': holds a lone surrogate (\\ud83d), half of a UTF-16 pair: no UTF-8 text holds it
    >>> unstorable({"count": 3, "price": 1.5}) is None
    True
"""

from __future__ import annotations

import math
from typing import Any

from prefect_openai_chat.surrogates import lone_surrogate

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def first_unstorable(value: Any) -> tuple[str, str] | None:
    """`(path, what is wrong)` of the first value breaking the rule, else None.

    The path reads `items[2].price` (empty for the value itself).
    """
    if _storable(value):  # the common case, without a path built for every item
        return None
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            for key in item:
                if (problem := _problem(key)) is not None:
                    return path, f"a key {problem}"
            stack.extend((_join(path, str(k)), v) for k, v in reversed(item.items()))
        elif isinstance(item, list | tuple):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(item))))
        elif (problem := _problem(item)) is not None:
            return path, problem
    return None


def _storable(value: Any) -> bool:
    """Whether `value` keeps the rule (`first_unstorable` says where it does not)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):  # the common leaf first; nearly always ASCII
            if not item.isascii() and lone_surrogate(item) is not None:
                return False
        elif isinstance(item, dict):
            stack.extend(item.values())
            if not _ascii_keys(item):
                stack.extend(item)
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif _problem(item) is not None:
            return False
    return True


def _ascii_keys(item: dict[Any, Any]) -> bool:
    """Whether every key is an ASCII string, in one pass over them all (the common case)."""
    try:
        return "".join(item).isascii()
    except TypeError:  # a key that is not a string: each is looked at
        return False


def _problem(item: Any) -> str | None:
    """What breaks the rule in one scalar, else None."""
    if isinstance(item, int) and not isinstance(item, bool):
        if not INT64_MIN <= item <= INT64_MAX:
            return f"{int_text(item)} does not fit a 64-bit integer column"
    elif isinstance(item, float) and not math.isfinite(item):
        return f"{item} is not a finite number (NaN and Infinity cannot be stored)"
    elif isinstance(item, str) and (half := lone_surrogate(item)) is not None:
        return f"holds a lone surrogate ({half}), half of a UTF-16 pair: no UTF-8 text holds it"
    return None


def unstorable(value: Any) -> str | None:
    """Why `value` (a row, or a record's value) cannot be stored, naming the field; else None."""
    found = first_unstorable(value)
    if found is None:
        return None
    path, problem = found
    return f"field {path!r}: {problem}" if path else problem


def int_text(number: int, limit: int = 60) -> str:
    """The integer as text, shortened when long (Python refuses str() past 4,300 digits).

    Example:
        >>> int_text(2**70), int_text(10**80), int_text(10**5000)
        ('1180591620717411303424', '10000000000000000000...(81 digits)', 'an integer of 16610 bits')
    """
    try:
        text = str(number)
    except ValueError:
        return f"an integer of {number.bit_length()} bits"
    return text if len(text) <= limit else f"{text[:20]}...({len(text)} digits)"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
