"""Process-wide registries: one circuit guard, retry budget or limiter per key, at most a few.

A key holds everything the object was built with (the endpoint and the settings), so two
callers with different settings never share an object, and no caller changes another's.
Every registry is a least-recently-used map (`cachetools.LRUCache`) of `size` entries
behind a lock, so a process that talks to many endpoints does not grow without end;
an object pushed out keeps working for whoever still holds it, and the next caller
of its key gets a fresh one. `reset_registries()` empties them all (the public entry
point is `prefect_openai_chat.reset_process_state()`).

Example:
    >>> from prefect_openai_chat.resilience.registry import Registry
    >>> counters: Registry[list[int]] = Registry("doc", size=2)
    >>> counters.get("k", list) is counters.get("k", list)
    True
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from cachetools import LRUCache

T = TypeVar("T")
REGISTRY_SIZE = 1024  # keys (endpoint and model, or account) one registry keeps
_registries: weakref.WeakSet[Registry[object]] = weakref.WeakSet()


class Registry(Generic[T]):
    """Objects shared by every caller with the same key; thread-safe, bounded (LRU).

    Args:
        name: What it holds, for diagnostics.
        size: The most keys it keeps; the least recently used is forgotten first.
    """

    def __init__(self, name: str, size: int = REGISTRY_SIZE) -> None:
        self.name = name
        self._items: LRUCache[Hashable, T] = LRUCache(maxsize=size)
        self._lock = threading.Lock()
        _registries.add(self)  # type: ignore[arg-type]

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        """The object for `key`, built by `build()` on first use.

        `build()` runs outside the lock (building may reach Redis, and a slow Redis must not
        hold up callers of other keys); when two callers build the same key at once, the
        first one stored wins and the other object is dropped unused.
        """
        with self._lock:
            item = self._items.get(key)
        if item is not None:
            return item
        made = build()
        with self._lock:
            item = self._items.get(key)
            if item is None:
                item = self._items[key] = made
            return item

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        """Forget every object."""
        with self._lock:
            self._items.clear()


def reset_registries() -> None:
    """Forget every circuit guard, retry budget and limiter of this process."""
    for registry in list(_registries):
        registry.clear()
