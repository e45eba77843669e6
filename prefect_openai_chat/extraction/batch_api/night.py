"""A night of extractions through the Batch API: every record in, one outcome out.

`BatchNight` keeps one `Work` per distinct request (records with the same cache key
share it) in the night's `NightStore`, a temporary SQLite file, and reads them a page
at a time: a night's memory does not grow with its records. Round 0 sends every
record's first request in batches, each input file written to disk and uploaded from
there; each answer is replayed through the online path's parse, repair and validation
(`replay`), the result files streamed to disk and read a line at a time (`results`), and what
still needs a call (a re-ask, more room, a failed line) goes in the next round's
batches (`reask="batch"`, the default), or online at once with `reask="online"`.
Batches are planned within the API's limits and the model's enqueued-token limit, and
recorded in the run's ledger (by custom-id range) before any wait, so a restarted run
picks them up instead of paying again. A batch still unfinished past its deadline
(`deadline_s` after its creation) is cancelled and its records resubmitted or
quarantined; nothing its result files hold (malformed or repeated lines, lines of
other batches, a file that cannot be read) fails the run: each becomes the outcome of
the record it concerns, with the reason.

Its options are `BatchApiOptions` (`options.py`).

Example:
    >>> work = Work("a1b2", "Ticket 7: the invoice is wrong.")
    >>> work.status, work.finished
    ('queued', False)
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import openai
from pydantic import BaseModel

from prefect_openai_chat.chat import ChatRunner
from prefect_openai_chat.errors import ChatError
from prefect_openai_chat.extraction.batch_api.client import TERMINAL, BatchClient
from prefect_openai_chat.extraction.batch_api.ledger import BatchLedger
from prefect_openai_chat.extraction.batch_api.lines import (
    BatchLine,
    batch_line,
    batch_spans,
    plan_waves,
)
from prefect_openai_chat.extraction.batch_api.options import BatchApiOptions
from prefect_openai_chat.extraction.batch_api.outputs import MALFORMED, LineResult
from prefect_openai_chat.extraction.batch_api.replay import NextRequest, replay_extraction
from prefect_openai_chat.extraction.batch_api.results import (
    download,
    failed_lines,
    match_result,
    read_results,
    unfinished,
)
from prefect_openai_chat.extraction.batch_api.store import NightStore, pack, unpack
from prefect_openai_chat.extraction.engine import CallFn
from prefect_openai_chat.extraction.options import ExtractionOptions
from prefect_openai_chat.extraction.outcomes import record_outcome
from prefect_openai_chat.redaction import redact_text
from prefect_openai_chat.results import FINAL_OUTCOMES, ChatResult, Extraction, RecordOutcome
from prefect_openai_chat.tokens.counting import FormatTokens, count_request_tokens

Status = Literal[
    "new", "queued", "answered", "failed_line", "unfinished", "batch_failed", "done",
    "elsewhere", "taken",
]  # fmt: skip
# A sharded night's works another shard holds (`claims.py`): not sent, not open; waited for,
# and `taken` (then sent online) if that shard gives them up.
ELSEWHERE = "status = 'elsewhere'"
OPEN = "status NOT IN ('done', 'cached', 'elsewhere')"
OnBatches = Callable[[Sequence[Any]], None]


@dataclass
class Work:
    """One distinct request of the night and what became of it (kept pickled in the
    night's `NightStore`, loaded a page at a time)."""

    custom_id: str
    text: str
    status: Status = "queued"
    line: BatchLine | None = None
    answers: list[ChatResult] = field(default_factory=list)
    batch_cost: float = 0.0
    online_cost_of_answers: float = 0.0
    note: str | None = None
    outcome: str | None = None  # the final `RecordOutcome` (JSON, index 0, key: custom_id)

    @property
    def finished(self) -> bool:
        """True once the record has its outcome."""
        return self.status == "done"

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without its line: the store keeps a line once, beside the work."""
        return {**self.__dict__, "line": None}

    def result(self) -> RecordOutcome:
        """The work's outcome (an error naming its note when it ended without one)."""
        if self.outcome is not None:
            return RecordOutcome.model_validate_json(self.outcome)
        return RecordOutcome(
            index=0, key=self.custom_id, ok=False, outcome="error", reason=self.note, via="batch"
        )


@dataclass(frozen=True)
class Planned:
    """A batch to wait for, already created (`batch_id`) or still to submit: the queued
    works of its round from `first` to `last` in custom-id order (`count` of them)."""

    first: str
    last: str
    count: int
    tokens: int = 0
    batch_id: str | None = None

    @property
    def span(self) -> tuple[str, str, int]:
        """What the batch ledger records of it."""
        return self.first, self.last, self.count


_MEMBERS = "status = 'queued' AND custom_id >= ? AND custom_id <= ?"


def _planned_tokens(planned: Planned) -> int:
    return planned.tokens


def _load(blob: bytes) -> Work:
    work: Work = unpack(blob)
    return work


class BatchNight:
    """The batch rounds of one run, Prefect-free: plan, submit, wait, collect, settle.

    The works live in `store` (on disk); each step reads them a page at a time.
    """

    def __init__(
        self,
        schema: type[BaseModel],
        model: str,
        options: BatchApiOptions,
        ledger: BatchLedger,
        extraction_options: ExtractionOptions,
        prices: Any = None,
        store: NightStore | None = None,
    ) -> None:
        self.schema, self.model, self.options, self.ledger = schema, model, options, ledger
        given = asdict(extraction_options)
        given.pop("on_error")  # a replay returns errors as outcomes
        self.extraction_options = {**given, "model": model}
        self.prices = prices
        self.store = store or NightStore()
        self.abandoned: dict[str, str] = {}  # batch id -> why its records are unfinished
        self.on_final: Callable[[str, str], None] | None = None  # (custom id, outcome JSON)
        self._formats = FormatTokens()  # the lines' formats, each counted once

    # --- round 0: every record's first request ---

    async def prepare(self, runner: ChatRunner) -> None:
        """Build the first request of every new work, as the online path builds it."""
        for page in self.store.pages("status = 'new'"):
            works = [_load(blob) for _, blob in page]
            for work in works:
                await self._next(work, runner)
            self._save(works)

    def _save(self, works: Sequence[Work]) -> None:
        """Save the works; a work holding a line holds a new one (a loaded work has none)."""
        self.store.save_works([(w.custom_id, pack(w), w.status) for w in works])
        lines = [w.line for w in works if w.line is not None]
        if lines:
            self.store.save_lines([(x.custom_id, x.data, len(x.data), x.tokens) for x in lines])

    async def _next(self, work: Work, runner: ChatRunner) -> NextRequest | Extraction[Any]:
        """Replay the work's answers; queue the request it needs next, or finish it."""
        step = await replay_extraction(
            self.schema, work.text, work.answers, None, **self.extraction_options
        )
        if isinstance(step, NextRequest):
            body = runner.request_body(step.messages, **step.params)
            tokens = count_request_tokens(body, self._formats)
            work.line = batch_line(work.custom_id, body, tokens)
            work.status = "queued"
        else:
            self._finish(work, step)
        return step

    def _finish(
        self, work: Work, extraction: Extraction[Any] | None, note: str | None = None
    ) -> None:
        work.note, work.status, work.line = note, "done", None
        if extraction is None:
            return
        outcome = record_outcome(0, work.custom_id, extraction)
        online = None
        if work.answers:
            online = round(
                (outcome.cost_usd or 0.0) - work.batch_cost + work.online_cost_of_answers, 10
            )
        outcome = outcome.model_copy(
            update={"via": "batch" if work.answers else "online", "online_cost_usd": online}
        )
        work.outcome = outcome.model_dump_json()
        if self.on_final is not None and outcome.outcome in FINAL_OUTCOMES:
            self.on_final(work.custom_id, work.outcome)

    # --- planning ---

    def plan(self, round_number: int) -> list[list[Planned]]:
        """The waves of this round: batches the ledger holds first, then new ones."""
        if not self.store.count("status = 'queued'"):
            return []
        recorded: list[Planned] = []
        covered: list[tuple[str, str]] = []
        for entry in self.ledger.batches(round_number):
            first, last, count = BatchLedger.span(entry)
            covered.append((first, last))
            if self.store.count(_MEMBERS, (first, last)):
                recorded.append(Planned(first, last, count, batch_id=entry["batch_id"]))
        where, params = "status = 'queued'", list[Any]()
        for first, last in covered:
            where += " AND NOT (custom_id >= ? AND custom_id <= ?)"
            params += [first, last]
        options = self.options
        spans = batch_spans(
            self.store.sizes(where, params),
            options.max_requests,
            options.max_bytes,
            options.enqueued_token_limit,
        )
        chunks = (Planned(first, last, count, tokens) for first, last, count, tokens in spans)
        waves: list[list[Planned]] = [recorded] if recorded else []
        waves.extend(plan_waves(chunks, options.enqueued_token_limit, _planned_tokens))
        return waves

    # --- submitting, waiting, collecting ---

    async def submit(self, client: BatchClient, round_number: int, planned: Planned) -> str:
        """Create the batch (or find the one a crashed run created); record it; its id.

        The input file is written to disk a page of lines at a time and uploaded from there.
        """
        if planned.batch_id is not None:
            return planned.batch_id
        digest = hashlib.sha256()
        path = self.store.folder / f"input-{round_number}.jsonl"
        with path.open("wb") as handle:
            for custom_id, data in self.store.lines(_MEMBERS, (planned.first, planned.last)):
                digest.update((b"\n" if handle.tell() else b"") + custom_id.encode())
                handle.write(data)
        chunk = digest.hexdigest()[:16]
        metadata = {
            "prefect_openai_chat_run": self.ledger.run_name,
            "round": str(round_number),
            "chunk": chunk,
        }
        try:
            batch = await client.find(metadata)
            if batch is None:
                name = f"{self.ledger.key}-{round_number}-{chunk}.jsonl"
                file_id = await client.upload_file(path, name)
                batch = await client.create(file_id, metadata)
        finally:
            path.unlink(missing_ok=True)
        self.ledger.add(round_number, planned.span, batch.input_file_id, batch.id)
        return str(batch.id)

    async def wait(
        self,
        client: BatchClient,
        batch_ids: Sequence[str],
        on_batches: OnBatches,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> list[Any]:
        """Poll until every batch has ended or is past its deadline (then cancelled and
        abandoned); `on_batches` sees them after each look."""
        while True:
            batches = [await client.retrieve(batch_id) for batch_id in batch_ids]
            on_batches(batches)
            for batch in batches:
                if self._open(batch) and self._late(batch, clock()):
                    await self._abandon(client, batch, clock())
            if not any(self._open(b) for b in batches):
                return batches
            await sleep(self.options.poll_interval_s)

    def _open(self, batch: Any) -> bool:
        return batch.status not in TERMINAL and batch.id not in self.abandoned

    def _late(self, batch: Any, now: float) -> bool:
        created = getattr(batch, "created_at", None)
        return isinstance(created, int | float) and now - created > self.options.deadline_s

    async def _abandon(self, client: BatchClient, batch: Any, now: float) -> None:
        """Cancel a batch past its deadline (best effort) and give its records up."""
        reason = (
            f"batch {batch.id} was still {batch.status} {now - batch.created_at:.0f} s after"
            f" it was created, past its deadline of {self.options.deadline_s:g} s (batch option"
            " deadline_s)"
        )
        try:
            await client.cancel(batch.id)
            reason += "; it was cancelled"
        except (openai.APIError, ChatError) as exc:
            reason += f"; cancelling it failed ({type(exc).__name__}: {exc})"
        self.abandoned[batch.id] = redact_text(reason)[:500]

    async def collect(self, client: BatchClient, batch: Any, planned: Planned) -> list[str]:
        """Match the batch's output and error lines to their works by `custom_id`.

        The files are downloaded to disk and read a line at a time; each line's result is
        kept in the store until both files are read. Returns notes to log: lines not used
        (malformed, repeated, of records this batch never sent) and result files that could
        not be read. Nothing here raises for what a file holds: each problem becomes the
        outcome of the record it concerns.
        """
        members = (planned.first, planned.last)
        if batch.id in self.abandoned:
            self._each_member(members, lambda work: unfinished(work, self.abandoned[batch.id]))
            return []
        if batch.status == "failed":
            self._failed_batch(batch, members)
            return []
        notes: list[str] = []
        unreadable: list[str] = []
        store = self.store
        store.clear_results()
        for kind, file_id in (("output", batch.output_file_id), ("error", batch.error_file_id)):
            path = store.folder / f"{kind}.jsonl"
            try:
                await download(client, file_id, path, self.options.poll_interval_s)
            except (openai.APIError, ChatError) as exc:
                text = f"its {kind} file {file_id} could not be read ({type(exc).__name__}: {exc})"
                unreadable.append(redact_text(text)[:300])
                continue
            try:
                where = f"batch {batch.id} {kind} file"
                read_results(store, path, where, notes, self.model, self.prices)
            finally:
                path.unlink(missing_ok=True)
        foreign, example = store.results_outside("custom_id >= ? AND custom_id <= ?", members)
        notes += [f"batch {batch.id}: {u}" for u in unreadable]
        if foreign:
            notes.append(
                f"batch {batch.id}: {foreign} result line(s) for records this batch never"
                f" sent (e.g. {str(example)[:24]}); ignored"
            )

        def match(work: Work) -> None:
            blob = store.result(work.custom_id)
            result: LineResult | None = None if blob is None else unpack(blob)
            match_result(batch, work, result, unreadable)
            if result is not None and result.code == MALFORMED:
                notes.append(
                    f"batch {batch.id}: record {work.custom_id[:16]}: {result.error}; asked again"
                )

        self._each_member(members, match)
        store.clear_results()
        return [redact_text(note)[:500] for note in notes]

    def _each_member(self, members: tuple[str, str], change: Callable[[Work], None]) -> None:
        """Apply `change` to each queued work of the batch over `members`, a page at a time."""
        for page in self.store.pages(_MEMBERS, members):
            works = [_load(blob) for _, blob in page]
            for work in works:
                change(work)
            self._save(works)

    def _failed_batch(self, batch: Any, members: tuple[str, str]) -> None:
        found = failed_lines(batch, lambda line: self.store.nth(_MEMBERS, members, line - 1))
        if found is None:
            return  # still queued: the next round sends it once the queue has room
        by_id, first = found

        def fail(work: Work) -> None:
            reason = by_id.get(work.custom_id) or f"another line failed it ({first})"
            work.status = "batch_failed"
            work.note = redact_text(f"batch {batch.id} failed validation: {reason}")[:500]

        self._each_member(members, fail)

    # --- settling ---

    async def settle(
        self, round_number: int, runner: ChatRunner, online: CallFn, slots: int
    ) -> None:
        """Decide every answered or failed work: finished, queued again, or online now.

        A page of works at a time: its online calls end before the next page is read.
        """
        last_round = round_number + 1 >= self.options.max_rounds
        batch_again = self.options.reask == "batch" and not last_round
        semaphore = asyncio.Semaphore(max(1, slots))
        where = "status IN ('answered', 'failed_line', 'unfinished', 'batch_failed')"
        if last_round:
            where = "status IN ('answered', 'failed_line', 'unfinished', 'batch_failed', 'queued')"

        # settling moves a work out of `where` (or to `queued`, another status when not
        # the last round), so each page is read from the start of what is left
        after = ""
        while page := self.store.works_page(where, (), after):
            works = [_load(blob) for _, blob in page]
            go_online: list[Work] = []
            for work in works:
                if work.status == "answered":
                    step = await self._next(work, runner)
                    if isinstance(step, NextRequest) and not batch_again:
                        go_online.append(work)
                elif work.status == "failed_line":
                    if batch_again:
                        work.status = "queued"  # the same request, in the next round
                    else:
                        go_online.append(work)
                elif work.status == "unfinished":
                    if self.options.unfinished == "quarantine":
                        note = f"{work.note}; not answered (unfinished='quarantine')"
                        self._finish(work, None, note)
                    elif last_round:
                        go_online.append(work)
                    else:
                        work.status = "queued"
                elif work.status == "batch_failed":  # failed validation, or answered differently
                    self._finish(work, None, work.note)
                elif work.status == "queued" and last_round:
                    go_online.append(work)  # a batch the queue had no room for, in the last round
            await asyncio.gather(*(self._online(w, online, semaphore) for w in go_online))
            self._save(works)
            after = page[-1][0]

    async def _online(self, work: Work, online: CallFn, semaphore: asyncio.Semaphore) -> None:
        """Finish `work` online: its extraction replayed over its answers, then called."""
        async with semaphore:
            result = await replay_extraction(
                self.schema, work.text, work.answers, online, **self.extraction_options
            )
        assert not isinstance(result, NextRequest)
        self._finish(work, result)

    async def send_online(self, where: str, online: CallFn, slots: int) -> None:
        """Finish the works matching `where` online, a page at a time (a sharded night's
        requests another shard held and gave up)."""
        semaphore = asyncio.Semaphore(max(1, slots))
        for page in self.store.pages(where):
            works = [_load(blob) for _, blob in page]
            await asyncio.gather(*(self._online(w, online, semaphore) for w in works))
            self._save(works)

    def give_up(self, note: str) -> None:
        """End every work still open with `note` (never left without an outcome)."""

        def end(work: Work) -> None:
            self._finish(work, None, note)

        for page in self.store.pages(OPEN):
            works = [_load(blob) for _, blob in page]
            for work in works:
                end(work)
            self._save(works)

    @property
    def open_works(self) -> int:
        """Works without an outcome yet (but those another shard holds)."""
        return self.store.count(OPEN)
