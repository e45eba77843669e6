"""The one client cache: an `AsyncOpenAI` client per settings and event loop.

Prefect runs async tasks on event loops of its own, and an `AsyncOpenAI` client used on
another loop fails with "Event loop is closed"; clients are therefore cached per running
loop. Loops are held weakly, and a loop's clients are closed when it shuts down:
`asyncio.run` (and the plugin's own sync loops, `_sync.py`) call
`loop.shutdown_asyncgens()` before closing, which closes a small async generator the
cache keeps on each loop; its `finally` closes that loop's clients. A loop closed
without that step is forgotten at the next lookup on another loop. Each loop keeps at
most `per_loop` clients, the least recently used closed first.

Example:
    >>> import asyncio
    >>> from prefect_openai_chat.chat.clients import ClientCache
    >>> cache = ClientCache()
    >>> async def twice() -> bool:
    ...     return cache.get("k", object) is cache.get("k", object)
    >>> asyncio.run(twice())
    True
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any, Generic, TypeVar

C = TypeVar("C")
PER_LOOP = 64  # clients one event loop keeps (settings x credentials in use at once)


class _LoopClients:
    """The clients of one event loop, closed when the loop shuts down its async generators."""

    def __init__(self, per_loop: int, on_shutdown: Callable[[_LoopClients], None]) -> None:
        self.clients: OrderedDict[Hashable, Any] = OrderedDict()
        self.per_loop = per_loop
        self._on_shutdown = on_shutdown
        self._closing: set[asyncio.Task[None]] = set()
        self._watch = self._close_at_shutdown()
        _start(self._watch)

    async def _close_at_shutdown(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            self._on_shutdown(self)
            clients, self.clients = list(self.clients.values()), OrderedDict()
            await asyncio.gather(*(_close(client) for client in clients))

    def add(self, key: Hashable, client: Any) -> None:
        self.clients[key] = client
        while len(self.clients) > self.per_loop:
            _, oldest = self.clients.popitem(last=False)
            task = asyncio.ensure_future(_close(oldest))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)


class ClientCache(Generic[C]):
    """Clients by (settings key, running event loop); thread-safe.

    Args:
        per_loop: The most clients one loop keeps; the least recently used is closed.
    """

    def __init__(self, per_loop: int = PER_LOOP) -> None:
        self.per_loop = per_loop
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClients] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], C]) -> C:
        """The client for `key` on the running event loop, built by `build()` on first use."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._loops.get(loop)
            if entry is not None and key in entry.clients:
                entry.clients.move_to_end(key)
                return entry.clients[key]  # type: ignore[no-any-return]
        client = build()  # outside the lock: building reads the credentials
        with self._lock:
            entry = self._loops.get(loop)
            if entry is None:
                for old in [old for old in self._loops if old.is_closed()]:
                    del self._loops[old]
                held = weakref.ref(loop)  # the entry must not keep its loop alive
                entry = self._loops[loop] = _LoopClients(
                    self.per_loop, lambda done: self._forget(held, done)
                )
            if key in entry.clients:  # another thread on this loop built it first
                return entry.clients[key]  # type: ignore[no-any-return]
            entry.add(key, client)
            return client

    def loops(self) -> int:
        """How many event loops hold clients now (for tests and diagnostics)."""
        with self._lock:
            return len(self._loops)

    def clear(self) -> None:
        """Forget every client; each loop closes the clients it held when it next runs."""
        with self._lock:
            self._loops.clear()

    def _forget(self, held: weakref.ref[asyncio.AbstractEventLoop], done: _LoopClients) -> None:
        """A loop shut down (or a cleared entry was collected): drop its entry, if still it."""
        loop = held()
        with self._lock:
            if loop is not None and self._loops.get(loop) is done:
                del self._loops[loop]


class ClientSource:
    """The client of one runner: its settings key and how to build it, from a `ClientCache`.

    The key is read on first use (`key_of()`, e.g. the credentials' fingerprint) and kept;
    `switch` changes it (new credentials after a 401). Calling the source gives the
    running loop's client for the current key.

    Example:
        >>> import asyncio
        >>> source = ClientSource(lambda: ("key", 1), object, ClientCache())
        >>> async def same() -> bool:
        ...     return source() is source()
        >>> asyncio.run(same())
        True
        >>> source.switch(("key", 1), object), source.switch(("key", 2), object)
        (False, True)
    """

    def __init__(
        self, key_of: Callable[[], Hashable], build: Callable[[], Any], cache: ClientCache[Any]
    ) -> None:
        self._key_of, self._build, self._cache = key_of, build, cache
        self._key: Hashable | None = None

    @property
    def key(self) -> Hashable:
        """The settings key of the client in use (read once, when first needed)."""
        if self._key is None:
            self._key = self._key_of()
        return self._key

    def __call__(self) -> Any:
        return self._cache.get(self.key, self._build)

    def switch(self, key: Hashable, build: Callable[[], Any]) -> bool:
        """Use the client for `key` from now on; True when it differs from the one in use."""
        changed = key != self.key
        self._key, self._build = key, build
        return changed


def _start(watch: AsyncIterator[None]) -> None:
    """Run `watch` to its first `yield` now, so that the running loop tracks it.

    The loop's first-iteration hook registers an async generator with the loop when
    `__anext__` is first called; the generator's body before the `yield` awaits
    nothing, so one `send(None)` runs it there and stops with `StopIteration`.
    """
    step: Any = watch.__anext__()
    with contextlib.suppress(StopIteration):
        step.send(None)


async def _close(client: Any) -> None:
    close = getattr(client, "close", None)
    if close is None:
        return
    with contextlib.suppress(Exception):  # closing must never fail a shutdown
        result = close()
        if inspect.isawaitable(result):
            await result


CLIENTS: ClientCache[Any] = ClientCache()  # the process's one client cache
