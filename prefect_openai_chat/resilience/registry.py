"""Process-wide registries: one circuit guard, retry budget or limiter per key and settings.

Example:
    >>> from prefect_openai_chat.resilience.registry import Registry
    >>> counters: Registry[list[int]] = Registry()
    >>> counters.get("k", {}, list) is counters.get("k", {}, list)
    True
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Objects shared by every caller with the same key and the same settings."""

    def __init__(self) -> None:
        self._items: dict[Hashable, T] = {}
        self._lock = threading.Lock()

    def get(self, key: str, settings: Mapping[str, Any], build: Callable[[], T]) -> T:
        """The object for (`key`, `settings`), built by `build()` on first use."""
        slot = (key, tuple(sorted((name, repr(value)) for name, value in settings.items())))
        with self._lock:
            item = self._items.get(slot)
            if item is None:
                item = self._items[slot] = build()
            return item

    def clear(self) -> None:
        """Forget every object (for tests)."""
        with self._lock:
            self._items.clear()
