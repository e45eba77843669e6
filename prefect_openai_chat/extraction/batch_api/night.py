"""A night of extractions through the Batch API: every record in, one outcome out.

`BatchNight` holds one `Work` per distinct request (records with the same cache key
share it). Round 0 sends every record's first request in batches; each answer is
replayed through the online path's parse, repair and validation (`replay`), and
what still needs a call (a re-ask, more room, a failed line) goes in the next round's
batches (`reask="batch"`, the default), or online at once with `reask="online"`.
Batches are planned within the API's limits and the model's enqueued-token limit, and
recorded in the run's ledger before any wait, so a restarted run picks them up instead
of paying again. A batch still
unfinished past its deadline (`deadline_s` after its creation) is cancelled and its
records resubmitted or quarantined; nothing its result files hold (malformed or repeated
lines, lines of other batches, a file that cannot be read) fails the run: each becomes
the outcome of the record it concerns, with the reason.

Example:
    >>> BatchApiOptions.from_mapping({"poll_interval_s": 5, "reask": "online"}).reask
    'online'
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import openai
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prefect_openai_chat.chat import ChatRunner
from prefect_openai_chat.checked_model import CheckedModel
from prefect_openai_chat.errors import ChatError, InvalidInputError
from prefect_openai_chat.extraction.batch_api.client import TERMINAL, BatchClient
from prefect_openai_chat.extraction.batch_api.ledger import BatchLedger
from prefect_openai_chat.extraction.batch_api.lines import (
    MAX_BATCH_BYTES,
    MAX_BATCH_REQUESTS,
    BatchLine,
    batch_line,
    plan_waves,
    split_lines,
)
from prefect_openai_chat.extraction.batch_api.outputs import MALFORMED, LineResult, ResultLines
from prefect_openai_chat.extraction.batch_api.replay import NextRequest, replay_extraction
from prefect_openai_chat.extraction.engine import CallFn, ExtractionOptions
from prefect_openai_chat.redaction import redact_text
from prefect_openai_chat.results import ChatResult, Extraction
from prefect_openai_chat.tokens import count_message_tokens

Status = Literal["queued", "answered", "failed_line", "unfinished", "batch_failed", "done"]
OnBatches = Callable[[Sequence[Any]], None]
COMPLETION_WINDOW_S = 24 * 3600.0
DEADLINE_MARGIN_S = 3600.0
DOWNLOAD_TRIES = 3


class BatchApiOptions(CheckedModel):
    """How a run through the OpenAI Batch API behaves; every field has a sensible default.

    Attributes:
        poll_interval_s: Seconds between two looks at a running batch.
        reask: Where re-asks, retries with more room and failed lines go: `batch` (the
            default: a follow-up batch at the batch price, one batch round-trip per
            round, up to `max_rounds`) or `online` (at once, at the online price).
        unfinished: What becomes of records an expired or cancelled batch did not
            answer: `resubmit` them in a new batch, or `quarantine` them.
        enqueued_token_limit: The model's enqueued-token limit (prompt tokens in
            unfinished batches); None: no waves.
        max_requests: Requests per batch (the API's limit: 50,000).
        max_bytes: Bytes per batch input file (the API's limit: 200 MB).
        max_rounds: Batch rounds at most; what still needs a call then goes online.
        deadline_s: Seconds from a batch's creation after which a batch that has not
            ended is cancelled and its records are treated as unfinished (the
            completion window, 24 h, plus an hour).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    poll_interval_s: float = Field(default=30.0, gt=0)
    reask: Literal["online", "batch"] = "batch"
    unfinished: Literal["resubmit", "quarantine"] = "resubmit"
    enqueued_token_limit: int | None = None
    max_requests: int = MAX_BATCH_REQUESTS
    max_bytes: int = MAX_BATCH_BYTES
    max_rounds: int = Field(default=4, ge=1)
    deadline_s: float = Field(default=COMPLETION_WINDOW_S + DEADLINE_MARGIN_S, gt=0)

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | BatchApiOptions | None) -> BatchApiOptions:
        """Options from a dict, with a clear error for an unknown name or a bad value."""
        if isinstance(options, BatchApiOptions):
            return options
        known = set(cls.model_fields)
        unknown = set(options or {}) - known
        if unknown:
            raise InvalidInputError(
                f"unknown batch option(s) {sorted(unknown)}; known: {sorted(known)}"
            )
        try:
            return cls(**dict(options or {}))
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(part) for part in first["loc"])
            raise InvalidInputError(
                f"batch option {name}: {first['msg']} (got {first.get('input')!r})"
            ) from None


@dataclass
class Work:
    """One distinct request of the night and what became of it."""

    custom_id: str
    text: str
    status: Status = "queued"
    line: BatchLine | None = None
    answers: list[ChatResult] = field(default_factory=list)
    batch_cost: float = 0.0
    online_cost_of_answers: float = 0.0
    note: str | None = None
    extraction: Extraction[Any] | None = None

    @property
    def finished(self) -> bool:
        """True once the record has its outcome."""
        return self.status == "done"


@dataclass(frozen=True)
class Planned:
    """A batch to wait for: already created (`batch_id`) or still to submit."""

    lines: Sequence[BatchLine]
    custom_ids: list[str]
    batch_id: str | None = None


class BatchNight:
    """The batch rounds of one run, Prefect-free: plan, submit, wait, collect, settle."""

    def __init__(
        self,
        schema: type[BaseModel],
        model: str,
        options: BatchApiOptions,
        ledger: BatchLedger,
        extraction_options: ExtractionOptions,
        prices: Any = None,
    ) -> None:
        self.schema, self.model, self.options, self.ledger = schema, model, options, ledger
        given = asdict(extraction_options)
        given.pop("on_error")  # a replay returns errors as outcomes
        self.extraction_options = {**given, "model": model}
        self.prices = prices
        self.works: dict[str, Work] = {}
        self.abandoned: dict[str, str] = {}  # batch id -> why its records are unfinished

    # --- round 0: every record's first request ---

    async def prepare(self, texts: Mapping[str, str], runner: ChatRunner) -> None:
        """One `Work` per custom id, with its first request built as the online path builds it."""
        for custom_id, text in texts.items():
            work = self.works[custom_id] = Work(custom_id, text)
            await self._next(work, runner)

    async def _next(self, work: Work, runner: ChatRunner) -> NextRequest | Extraction[Any]:
        """Replay the work's answers; queue the request it needs next, or finish it."""
        step = await replay_extraction(
            self.schema, work.text, work.answers, None, **self.extraction_options
        )
        if isinstance(step, NextRequest):
            body = runner.request_body(step.messages, **step.params)
            tokens = count_message_tokens(body["messages"], self.model, body.get("tools"))
            work.line = batch_line(work.custom_id, body, tokens)
            work.status = "queued"
        else:
            self._finish(work, step)
        return step

    def _finish(
        self, work: Work, extraction: Extraction[Any] | None, note: str | None = None
    ) -> None:
        work.extraction, work.note, work.status, work.line = extraction, note, "done", None

    # --- planning ---

    def plan(self, round_number: int) -> list[list[Planned]]:
        """The waves of this round: batches the ledger holds first, then new ones."""
        queued = {w.custom_id for w in self.works.values() if w.status == "queued"}
        if not queued:
            return []
        recorded = []
        covered: set[str] = set()
        for entry in self.ledger.batches(round_number):
            ids = list(entry["custom_ids"])
            covered.update(ids)
            if queued.intersection(ids):
                recorded.append(Planned((), ids, entry["batch_id"]))
        fresh = [
            self.works[c].line for c in sorted(queued - covered) if self.works[c].line is not None
        ]
        options = self.options
        chunks = split_lines(
            [line for line in fresh if line is not None],
            options.max_requests,
            options.max_bytes,
            options.enqueued_token_limit,
        )
        waves: list[list[Planned]] = [recorded] if recorded else []
        for wave in plan_waves(chunks, options.enqueued_token_limit):
            waves.append([Planned(chunk, [line.custom_id for line in chunk]) for chunk in wave])
        return waves

    # --- submitting, waiting, collecting ---

    async def submit(self, client: BatchClient, round_number: int, planned: Planned) -> str:
        """Create the batch (or find the one a crashed run created); record it; its id."""
        if planned.batch_id is not None:
            return planned.batch_id
        digest = hashlib.sha256("\n".join(planned.custom_ids).encode()).hexdigest()[:16]
        metadata = {
            "prefect_openai_chat_run": self.ledger.run_name,
            "round": str(round_number),
            "chunk": digest,
        }
        batch = await client.find(metadata)
        if batch is None:
            data = b"".join(line.data for line in planned.lines)
            file_id = await client.upload(data, f"{self.ledger.key}-{round_number}-{digest}.jsonl")
            batch = await client.create(file_id, metadata)
        self.ledger.add(round_number, planned.custom_ids, batch.input_file_id, batch.id)
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

    async def collect(
        self, client: BatchClient, batch: Any, custom_ids: Sequence[str]
    ) -> list[str]:
        """Match the batch's output and error lines to their works by `custom_id`.

        Returns notes to log: lines not used (malformed, repeated, of records this batch
        never sent) and result files that could not be read. Nothing here raises for
        what a file holds: each problem becomes the outcome of the record it concerns.
        """
        mine = [c for c in custom_ids if c in self.works and self.works[c].status == "queued"]
        if batch.id in self.abandoned:
            for custom_id in mine:
                self._unfinished(self.works[custom_id], self.abandoned[batch.id])
            return []
        if batch.status == "failed":
            self._failed_batch(batch, list(custom_ids), mine)
            return []
        lines, unreadable = ResultLines(), []
        for kind, file_id in (("output", batch.output_file_id), ("error", batch.error_file_id)):
            try:
                data = await self._download(client, file_id)
            except (openai.APIError, ChatError) as exc:
                text = f"its {kind} file {file_id} could not be read ({type(exc).__name__}: {exc})"
                unreadable.append(redact_text(text)[:300])
                continue
            lines.add(data, self.model, self.prices, f"batch {batch.id} {kind} file")
        sent = set(custom_ids)
        foreign = [c for c in lines.by_id if c not in sent]
        notes = lines.notes + [f"batch {batch.id}: {u}" for u in unreadable]
        if foreign:
            notes.append(
                f"batch {batch.id}: {len(foreign)} result line(s) for records this batch never"
                f" sent (e.g. {foreign[0][:24]}); ignored"
            )
        for custom_id in mine:
            result = lines.by_id.get(custom_id)
            self._match(batch, self.works[custom_id], result, unreadable)
            if result is not None and result.code == MALFORMED:
                notes.append(
                    f"batch {batch.id}: record {custom_id[:16]}: {result.error}; asked again"
                )
        return [redact_text(note)[:500] for note in notes]

    async def _download(self, client: BatchClient, file_id: str | None) -> bytes:
        """A result file, tried `DOWNLOAD_TRIES` times (each under the retry policy)."""
        for attempt in range(1, DOWNLOAD_TRIES + 1):
            try:
                return await client.download(file_id)
            except (openai.APIError, ChatError):
                if attempt == DOWNLOAD_TRIES:
                    raise
                await asyncio.sleep(min(self.options.poll_interval_s, 30.0))
        raise AssertionError("unreachable")

    def _match(
        self, batch: Any, work: Work, result: LineResult | None, unreadable: list[str]
    ) -> None:
        """What one work's line (or its absence) makes of it."""
        if result is not None and result.answer is not None:
            work.answers.append(result.answer)
            work.batch_cost += result.answer.cost_usd or 0.0
            work.online_cost_of_answers += result.online_cost_usd or 0.0
            work.status = "answered"
        elif result is not None and result.conflict:
            work.status, work.note = "batch_failed", f"batch {batch.id}: {result.error}"
        elif result is None and unreadable:
            self._unfinished(work, f"batch {batch.id} abandoned: {'; '.join(unreadable)}")
        elif (result is not None and result.unfinished) or (
            result is None and batch.status in ("expired", "cancelled")
        ):
            self._unfinished(work, f"batch {batch.id} {batch.status} first")
        else:
            work.status = "failed_line"
            work.note = (
                f"batch {batch.id}: {result.error}"
                if result is not None
                else f"batch {batch.id} returned no line for this record"
            )

    @staticmethod
    def _unfinished(work: Work, note: str) -> None:
        work.status, work.note = "unfinished", note

    def _failed_batch(self, batch: Any, custom_ids: list[str], mine: list[str]) -> None:
        errors = list(getattr(batch.errors, "data", None) or [])
        if any(getattr(e, "code", None) == "token_limit_exceeded" for e in errors):
            return  # still queued: the next round sends it once the queue has room
        by_id: dict[str, str] = {}
        for error in errors:
            line = getattr(error, "line", None)
            text = f"{getattr(error, 'code', None) or 'error'}: {getattr(error, 'message', '')}"
            if isinstance(line, int) and 1 <= line <= len(custom_ids):
                by_id[custom_ids[line - 1]] = f"line {line}: {text}"
        first = next(iter(by_id.values()), None) or (
            f"{errors[0].code}: {errors[0].message}" if errors else "no reason given"
        )
        for custom_id in mine:
            reason = by_id.get(custom_id) or f"another line failed it ({first})"
            self.works[custom_id].status = "batch_failed"
            note = f"batch {batch.id} failed validation: {reason}"
            self.works[custom_id].note = redact_text(note)[:500]

    # --- settling ---

    async def settle(
        self, round_number: int, runner: ChatRunner, online: CallFn, slots: int
    ) -> None:
        """Decide every answered or failed work: finished, queued again, or online now."""
        last_round = round_number + 1 >= self.options.max_rounds
        batch_again = self.options.reask == "batch" and not last_round
        go_online: list[Work] = []
        for work in self.works.values():
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
                    self._finish(work, None, f"{work.note}; not answered (unfinished='quarantine')")
                elif last_round:
                    go_online.append(work)
                else:
                    work.status = "queued"
            elif work.status == "batch_failed":  # failed validation, or answered differently
                self._finish(work, None, work.note)
            elif work.status == "queued" and last_round:
                go_online.append(work)  # a batch the queue had no room for, in the last round
        semaphore = asyncio.Semaphore(max(1, slots))

        async def finish_online(work: Work) -> None:
            async with semaphore:
                result = await replay_extraction(
                    self.schema, work.text, work.answers, online, **self.extraction_options
                )
            assert not isinstance(result, NextRequest)
            self._finish(work, result)

        await asyncio.gather(*(finish_online(work) for work in go_online))

    @property
    def open_works(self) -> int:
        """Works without an outcome yet."""
        return sum(not w.finished for w in self.works.values())
