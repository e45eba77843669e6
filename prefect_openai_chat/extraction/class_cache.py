"""A cache keyed by class, held weakly: what is built once per schema, freed with the schema.

`functools.cache` keeps every class it has seen for ever, so schemas made on the fly
(`pydantic.create_model`, one per run or per request) would never be freed. Values
must not refer to their class, or the class could never be freed either.

Example:
    >>> from pydantic import BaseModel, create_model
    >>> @class_cache
    ... def field_names(model: type[BaseModel]) -> tuple[str, ...]:
    ...     return tuple(model.model_fields)
    >>> Row = create_model("Row", a=(int, ...))
    >>> field_names(Row) is field_names(Row)
    True
    >>> len(field_names.cache)  # one entry, dropped once `Row` is collected
    1

tests/extraction/test_class_cache.py shows the entry go with its class.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K", bound=type)
V = TypeVar("V")


class class_cache(Generic[K, V]):  # used as a decorator, like functools.cache
    """Decorate `fn(cls) -> value` to build each class's value once, weakly keyed by class."""

    def __init__(self, fn: Callable[[K], V]) -> None:
        self.fn = fn
        self.cache: weakref.WeakKeyDictionary[K, V] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        functools.update_wrapper(self, fn)

    def __call__(self, cls: K) -> V:
        with self._lock:
            if cls in self.cache:
                return self.cache[cls]
        value = self.fn(cls)  # outside the lock: may call other cached functions
        with self._lock:
            return self.cache.setdefault(cls, value)
