"""Run the async implementation from sync code: the `name` twin of each `aname`.

Each thread keeps one event loop, so that the clients cached on it are reused
from call to call. The loop is shut down (its clients closed, see `chat/clients.py`)
and closed when its thread ends, or at exit for a thread that outlives the
interpreter's shutdown hooks. A loop belongs to the process that made it: a forked
child makes its own, and never closes its copies of the parent's, which share their
epoll instances with the parent (closing one there unregisters the parent's self-pipe,
and the parent's loop then sleeps through every wake-up from another thread).

Called where a loop is already running (a notebook, an async flow calling a sync task
inline), the coroutine runs on a helper thread instead, in a copy of the caller's
context: the Prefect run (its logger, its result store and settings) is the caller's.

Example:
    >>> import asyncio
    >>> from prefect_openai_chat._sync import run_sync
    >>> run_sync(asyncio.sleep(0, result=42))
    42
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar, cast

P = ParamSpec("P")
T = TypeVar("T")
_SHUTDOWN_WAIT_S = 5.0  # the longest a thread's loop waits for its last tasks when it ends


def _new_helper() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="prefect-openai-chat-sync")


_local = threading.local()
_helper = _new_helper()


def _start_afresh() -> None:
    """In a forked child: new loops and helper threads; the parent's are not the child's.

    The child has none of the parent's threads, and an inherited loop shares its epoll
    instance with the parent's: the child makes its own on its first sync call.
    """
    global _local, _helper
    _local = threading.local()
    _helper = _new_helper()


os.register_at_fork(after_in_child=_start_afresh)


class _ProcessLoop(asyncio.SelectorEventLoop):
    """An event loop that only the process that made it closes.

    A forked child's copy shares its epoll instance and self-pipe with the parent's
    loop. Closing the copy unregisters the self-pipe from that epoll instance, and the
    parent's loop then sleeps through every wake-up from another thread (a result from
    its executor never arrives). The child never closes it on purpose, but the garbage
    collector does: an unclosed loop's `__del__` closes it, and the parent's thread
    loops are garbage in the child, whose threads are gone.
    """

    def __init__(self) -> None:
        super().__init__()
        self._owner_pid = os.getpid()

    def owned_here(self) -> bool:
        """Whether this process made the loop (not a forked child's copy)."""
        return os.getpid() == self._owner_pid

    def close(self) -> None:
        if self.owned_here():
            super().close()


class _ThreadLoop:
    """The event loop of one thread's sync calls; shut down when the thread drops it."""

    def __init__(self) -> None:
        self.loop = _ProcessLoop()
        # Runs when the thread ends (its thread-local values are released) or at exit;
        # also in a forked child, where the other threads' values are released at once.
        weakref.finalize(self, _shut_down, self.loop)


def _shut_down(loop: _ProcessLoop) -> None:
    """Shut `loop` down on a thread of its own; wait for it only at the interpreter's exit.

    This is a finalizer: it runs wherever the garbage collector runs, possibly in a thread
    that holds a lock the shutdown needs (a logging handler's, while the clients' close
    logs), so it must never wait there. At exit it waits, so the clients are closed.
    A forked child leaves its copy alone: the loop's epoll instance is the parent's, and
    closing the loop would unregister the parent's self-pipe from it.
    """
    if loop.is_closed() or not loop.owned_here():
        return
    closer = threading.Thread(
        target=_close_loop, args=(loop,), name="prefect-openai-chat-close", daemon=True
    )
    closer.start()
    if not threading.main_thread().is_alive():  # the interpreter is exiting
        closer.join(_SHUTDOWN_WAIT_S + 1.0)


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Close `loop` after its async generators (which close its cached clients)."""
    with contextlib.suppress(Exception):
        pending = asyncio.all_tasks(loop)  # e.g. closing the clients of a cleared cache
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=_SHUTDOWN_WAIT_S))
        loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion and return its result, from any sync context."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        held: _ThreadLoop | None = getattr(_local, "held", None)
        if held is None or held.loop.is_closed():
            held = _local.held = _ThreadLoop()
        return held.loop.run_until_complete(coro)
    context = contextvars.copy_context()  # the caller's Prefect run and settings
    future = _helper.submit(context.run, cast(Callable[..., Any], run_sync), coro)
    return cast(T, future.result())


class LoopThread:
    """One event loop running on a thread of its own, for the sync calls of one job.

    `run(coro)` from any other thread runs `coro` on this loop, in a copy of the caller's
    context (its Prefect run), and blocks until it is done: the calls of many threads
    share one loop, its clients and its connections, and wake each other without
    crossing threads. `close()` waits for what is left, closes the loop's clients (its
    async generators, see `chat/clients.py`) and ends the thread.

    Example:
        >>> loop = LoopThread("doc")
        >>> loop.run(asyncio.sleep(0, result=7))
        7
        >>> loop.close()
    """

    def __init__(self, name: str) -> None:
        self.loop = _ProcessLoop()  # a forked child has a copy of it, but not its thread
        self._thread = threading.Thread(
            target=self.loop.run_forever, name=f"prefect-openai-chat-{name}", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on this loop in a copy of the caller's context; return its result."""
        if not self.loop.owned_here():  # a forked child: no thread runs this loop here
            return run_sync(coro)
        context = contextvars.copy_context()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def start() -> None:
            task = self.loop.create_task(coro, context=context)
            task.add_done_callback(functools.partial(_settle, done))

        try:
            self.loop.call_soon_threadsafe(start)
        except RuntimeError:  # the loop is closed: run it where it was asked for
            return run_sync(coro)
        return done.result()

    def close(self) -> None:
        """Wait for the loop's calls to finish, close its clients and end its thread."""
        if self.loop.is_closed() or not self.loop.owned_here():  # a child leaves the parent's
            return
        if self._thread.is_alive():  # else the loop died of a BaseException: nothing to wait for
            asyncio.run_coroutine_threadsafe(_others_done(), self.loop).result()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
        _close_loop(self.loop)


async def _others_done() -> None:
    """Return once every other task of the running loop has finished."""
    while others := asyncio.all_tasks() - {asyncio.current_task()}:
        await asyncio.wait(others)


def _settle(done: concurrent.futures.Future[T], task: asyncio.Task[T]) -> None:
    """Hand a finished task's result (or error, or cancellation) to a waiting thread."""
    if task.cancelled():
        done.cancel()
    elif (error := task.exception()) is not None:
        done.set_exception(error)
    else:
        done.set_result(task.result())


def sync_twin(async_fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """The sync function with `async_fn`'s signature and docstring that runs it to completion.

    Prefect reads the twin's parameters through `inspect.signature`, which follows
    `__wrapped__`, so both tasks show the same parameters in the UI.

    Example:
        >>> async def double(x: int) -> int:
        ...     return 2 * x
        >>> sync_twin(double)(21)
        42
    """

    @functools.wraps(async_fn)
    def twin(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(async_fn(*args, **kwargs))

    twin.__doc__ = f"Sync twin of `{async_fn.__name__.lstrip('_')}`.\n\n{async_fn.__doc__ or ''}"
    return twin
