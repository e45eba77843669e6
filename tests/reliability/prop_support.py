"""Shared pieces of the property tests: JSON strategies and a wall-clock bound."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import strategies as st

T = TypeVar("T")

# Text that cannot read as a lazy placeholder (no dots, `//`, `#`, `<`) or a fence.
SAFE_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters=".…/#<`"), max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**18), max_value=10**18)
    | st.floats(allow_nan=False, allow_infinity=False)
    | SAFE_TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(SAFE_TEXT, inner, max_size=4),
    max_leaves=12,
)
OBJECTS = st.dictionaries(SAFE_TEXT, JSON_VALUES, max_size=5)
DOCUMENTS = OBJECTS | st.lists(JSON_VALUES, max_size=5)
# Prose around JSON: no brackets, quotes, backslashes or backticks.
PROSE = st.text(alphabet=st.characters(codec="utf-8", exclude_characters='{}[]"\\`'), max_size=40)


def within(seconds: float, fn: Callable[..., T], *args: Any) -> tuple[T, float]:
    """`fn(*args)` and its duration; fails the test (instead of hanging) past `seconds`."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    started = time.perf_counter()
    future = pool.submit(fn, *args)
    try:
        return future.result(timeout=seconds), time.perf_counter() - started
    except concurrent.futures.TimeoutError:
        pytest.fail(f"{getattr(fn, '__name__', fn)} took longer than {seconds} s")
    finally:
        pool.shutdown(wait=False)
