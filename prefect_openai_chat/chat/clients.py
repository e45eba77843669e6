"""Client cache: one `openai` client per settings, thread and event loop.

Prefect runs each async task on a fresh event loop in a worker thread, and an
`AsyncOpenAI` client used on another loop fails with "Event loop is closed".
Async clients are therefore cached per running loop (entries of closed loops are
dropped), sync clients per thread.

Example:
    >>> from prefect_openai_chat.chat.clients import cached_sync_client
    >>> cached_sync_client(("k",), object) is cached_sync_client(("k",), object)
    True
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

C = TypeVar("C")

_lock = threading.Lock()
_by_loop: dict[asyncio.AbstractEventLoop, dict[Hashable, Any]] = {}
_local = threading.local()


def cached_async_client(key: Hashable, build: Callable[[], C]) -> C:
    """The client for `key` on the running event loop, built on first use."""
    loop = asyncio.get_running_loop()
    with _lock:
        clients = _by_loop.get(loop)
        if clients is None:
            for old in [old for old in _by_loop if old.is_closed()]:
                del _by_loop[old]
            clients = _by_loop[loop] = {}
        client = clients.get(key)
        if client is None:
            client = clients[key] = build()
        return client


def cached_sync_client(key: Hashable, build: Callable[[], C]) -> C:
    """The client for `key` in the current thread, built on first use."""
    clients: dict[Hashable, Any] = _local.__dict__.setdefault("clients", {})
    client = clients.get(key)
    if client is None:
        client = clients[key] = build()
    return client


def cached_loops() -> int:
    """How many event loops hold cached clients (for tests and diagnostics)."""
    with _lock:
        return len(_by_loop)
