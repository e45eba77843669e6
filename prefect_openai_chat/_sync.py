"""Run the async implementation from sync code: the `name` twin of each `aname`.

Each thread keeps one event loop, so that the clients cached on it are reused
from call to call. Called where a loop is already running (a notebook, an async
flow calling a sync task inline), the coroutine runs on a helper thread instead.

Example:
    >>> import asyncio
    >>> from prefect_openai_chat._sync import run_sync
    >>> run_sync(asyncio.sleep(0, result=42))
    42
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

T = TypeVar("T")
_local = threading.local()
_helper = ThreadPoolExecutor(max_workers=4, thread_name_prefix="prefect-openai-chat-sync")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion and return its result, from any sync context."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
        if loop is None or loop.is_closed():
            loop = _local.loop = asyncio.new_event_loop()
        return loop.run_until_complete(coro)
    future = _helper.submit(cast(Callable[..., Any], run_sync), coro)
    return cast(T, future.result())
