"""What the chunks of one run share: their concurrency gate and, for sync chunks, one loop.

`extract_records` names a pool per run (`share_concurrency`); every chunk started with
that `concurrency_pool` takes the same `AdaptiveConcurrency` (`gate_for`), so chunks
that overlap never exceed the run's `concurrency`, and the run's sync chunks run on one
event loop (`shared_loop`, found by `loop_for`). Both registries are process state: a
gate lives while its run holds it (a `WeakValueDictionary`), a loop while its block runs.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator

from prefect_openai_chat._sync import LoopThread
from prefect_openai_chat.resilience import AdaptiveConcurrency

_pools: weakref.WeakValueDictionary[str, AdaptiveConcurrency] = weakref.WeakValueDictionary()
_loops: dict[str, LoopThread] = {}  # `shared_loop`: the loop of a pool's sync chunks


def share_concurrency(name: str, gate: AdaptiveConcurrency) -> str:
    """Let chunks started with `concurrency_pool=name` share `gate` while it is referenced.

    Example:
        >>> gate = AdaptiveConcurrency(16)
        >>> share_concurrency("doc-run", gate)
        'doc-run'
    """
    _pools[name] = gate
    return name


@contextlib.contextmanager
def shared_loop(pool: str) -> Iterator[None]:
    """Run the sync chunks started with `concurrency_pool=pool` on one event loop meanwhile.

    Each sync `extract_chunk` runs in a worker thread of Prefect's task runner; without
    this, each thread drives its chunk on an event loop of its own, and the chunks' shared
    gate wakes calls across threads. Within the block, the worker threads hand their
    chunks to one loop on a thread of its own (in the task run's context, so its logger
    and settings are the chunk's): one client and its connections for every chunk, and no
    wake-up crosses a thread. The block's end waits for the loop's chunks, then closes it
    and its clients.

    Example:
        >>> with shared_loop("doc-loop"):
        ...     "doc-loop" in _loops
        True
    """
    loop = LoopThread("chunks")
    _loops[pool] = loop
    try:
        yield
    finally:
        _loops.pop(pool, None)
        loop.close()


def gate_for(pool: str | None, concurrency: int) -> AdaptiveConcurrency:
    """The gate shared under `pool` (`share_concurrency`), else a new one of `concurrency`."""
    gate = _pools.get(pool) if pool else None
    return gate if gate is not None else AdaptiveConcurrency(concurrency, name="extract_batch")


def loop_for(pool: str | None) -> LoopThread | None:
    """The loop `shared_loop` runs for `pool`'s sync chunks, if one is running."""
    return _loops.get(pool) if pool else None
