"""The online runner: a run's records as `extract_chunk` tasks, overlapping, written in order.

A chunk is the unit of checkpointing and of the UI's task runs, not of waiting: while
the slowest records of one chunk finish, the next chunks already fill the HTTP slots
(all chunks share one concurrency gate, so `concurrency` still bounds the calls in
flight). Finished chunks wait in memory for the ones before them, at most `BUFFERED`
windows of them, so the output keeps the input's order.

Example:
    >>> from prefect_openai_chat.flows.online import chunks
    >>> [len(chunk) for chunk in chunks(iter(range(5)), 2)]
    [2, 2, 1]
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TypeVar

from prefect.futures import PrefectFuture, as_completed
from prefect.utilities.annotations import quote

from prefect_openai_chat.flows.source_lines import SourceItem
from prefect_openai_chat.flows.window import RecordWindow, RunJob
from prefect_openai_chat.results import ChunkReport
from prefect_openai_chat.tasks import extract_chunk

T = TypeVar("T")


def chunks(items: Iterator[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last one shorter)."""
    while chunk := list(itertools.islice(items, size)):
        yield chunk


class OnlineRunner:
    """Chunks in flight at once, written out through the window in input order."""

    BUFFERED = 8  # finished chunks kept per chunk in flight, waiting for an earlier one

    def __init__(self, job: RunJob, window: RecordWindow) -> None:
        self.job, self.window = job, window
        self.pending: dict[PrefectFuture[ChunkReport], list[SourceItem]] = {}  # input order
        self.finished: set[PrefectFuture[ChunkReport]] = set()  # filled from task threads

    def run(self, items: Iterator[SourceItem], total: int | None) -> None:
        """Extract every record of `items` and write each out; return when all are written."""
        size = 1 if self.job.run.per_record_tasks else self.job.run.chunk_size
        unit = "record" if self.job.run.per_record_tasks else "chunk"
        chunks_total = None if total is None else max(1, -(-total // size))
        in_flight = 2 + -(-self.job.run.concurrency // size)
        for number, chunk in enumerate(chunks(items, size), start=1):
            self.submit(chunk, f"{unit} {number}/{chunks_total or '?'}", in_flight)
        while self.pending:
            self._wait_for_one()

    def submit(self, chunk: list[SourceItem], label: str, in_flight: int) -> None:
        """Start `chunk` as an `extract_chunk` task once fewer than `in_flight` are running."""
        readable = self.window.readable(chunk)
        if not readable:
            return
        while (
            len(self.pending) - len(self.finished) >= in_flight
            or len(self.pending) >= in_flight * self.BUFFERED
        ):
            self._wait_for_one()
        job = self.job
        # Quoted: Prefect hands them over as they are, without walking every record (and
        # the block and spec) for futures to resolve; none of them holds one. The task run
        # is named from `label` by the task itself ("extract SupportTicket chunk 3/40"):
        # `with_options` per chunk would build a new task, reading its source each time.
        future = extract_chunk.submit(
            quote(job.chat_model),
            quote(job.spec),
            quote([item.record for item in readable if item.record is not None]),
            concurrency=job.run.concurrency,
            cache=job.run.cache,
            progress=False,
            label=label,
            concurrency_pool=job.concurrency_pool,
        )
        self.pending[future] = readable
        future.add_done_callback(self.finished.add)

    def _wait_for_one(self) -> None:
        """Wait until one more chunk finishes; write out the finished ones at the head."""
        running = [f for f in self.pending if f not in self.finished]
        if running:
            next(as_completed(running))
        while self.pending:
            head = next(iter(self.pending))
            if head not in self.finished:
                break
            self.finished.discard(head)
            self.window.write(self.pending.pop(head), head.result().records)
