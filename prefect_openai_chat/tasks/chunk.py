"""`extract_chunk`: many extractions in flight inside one Prefect task.

One Prefect task per record costs more orchestration than the HTTP call itself, so a
chunk of records runs concurrently on one `AsyncOpenAI` client. `concurrency` is
the most HTTP calls in flight; an `AdaptiveConcurrency` gate finds the real level
below it (fewer after 429s or when latency grows). Only HTTP attempts hold a slot,
so a record that waits out a 429 or a backoff does not idle the others; several
records per slot are in progress at once. Chunks of one flow run share one gate
(`concurrency_pool`), so chunks can overlap without exceeding `concurrency`.

Each record gets its own outcome: a validated value, or the reason it goes to
quarantine. A finished record is stored in the record ledger (`cache=`) as soon as it
finishes, on what determines it, so a re-run (even after a crash mid-chunk) pays only
for what is new. A record is claimed in the ledger right before its first call and
given back if it does not finish, so workers sharing a ledger never pay twice for it:
one that finds a record claimed waits for its outcome. Records
that failed for a reason that outlasts the in-call retries (an open circuit, an
outage) get the task tier inside the chunk: the same decision as the tasks'
`retry_condition_fn` (`resilience.policy.task_retry_delay`), so they are tried again
after the circuit's reset timeout, at most `task_retries` times.

`extract_batch` (and `aextract_batch`), the names before, take the spec's fields as
keyword arguments; they still work, with a `DeprecationWarning` on import.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from prefect_openai_chat._sync import run_sync, sync_twin
from prefect_openai_chat.blocks import ChatModel
from prefect_openai_chat.chat import ChatRunner
from prefect_openai_chat.errors import ChatError, InvalidInputError, LedgerError
from prefect_openai_chat.extraction import ensure_model, run_extraction
from prefect_openai_chat.extraction.ledger import Ledger, RecordClaims
from prefect_openai_chat.extraction.outcomes import (
    cached_outcome,
    failed_outcome,
    ledger_phrase,
    record_outcome,
    unexpected_reason,
)
from prefect_openai_chat.extraction.spec import ExtractionSpec
from prefect_openai_chat.resilience import task_retry_delay
from prefect_openai_chat.results import FINAL_OUTCOMES, ChunkReport, Extraction, RecordOutcome
from prefect_openai_chat.tasks._common import assemble, record_ledger, run_logger
from prefect_openai_chat.tasks.extract import extraction_key, runner_call
from prefect_openai_chat.tasks.run_sharing import gate_for, loop_for

Record = Mapping[str, Any] | str
RECORDS_PER_SLOT = 4  # records in progress per HTTP slot: enough to keep every slot busy
TIER_LINES = 3  # records of a chunk whose task-tier round is logged (an outage meets them all)
# Records claimed in the ledger per HTTP slot, per chunk: few enough that workers sharing a
# ledger over the same input each find records left to claim, enough to keep slots busy.
CLAIMS_PER_SLOT = 2


@dataclass(frozen=True, slots=True)
class _Pending:
    """A record to claim and pay for: where its outcome goes, and what it is."""

    offset: int  # its place in the chunk's outcomes
    index: int  # its place in the run
    record: Record
    text: str
    key: str  # its ledger key


class _ChunkRun:
    """One chunk: ledger lookups and claims, bounded concurrency, per-record outcomes."""

    def __init__(
        self,
        runner: ChatRunner,
        model: ChatModel,
        spec: ExtractionSpec,
        concurrency: int,
        cache: Ledger | None,
    ):
        self.runner, self.model, self.spec, self.cache = runner, model, spec, cache
        self.semaphore = asyncio.Semaphore(concurrency * RECORDS_PER_SLOT)
        # Records claimed and not finished: claimed as they start, not all at the outset.
        self.window = asyncio.Semaphore(concurrency * CLAIMS_PER_SLOT)
        self.claims = RecordClaims(cache) if cache is not None else None
        self.tier_rounds = 0  # task-tier rounds so far, for the log
        self.options = spec.options(  # one object for every record
            runner.settings.model,
            runner.settings.defaults.get("max_completion_tokens"),
            on_error="return",
        )

    def key_of(self, index: int, record: Record) -> str:
        field = self.spec.key_field
        if field and isinstance(record, Mapping) and record.get(field) is not None:
            return str(record[field])
        return str(index)

    async def run(
        self, records: Sequence[Record], start: int, on_done: Callable[[], None]
    ) -> list[RecordOutcome]:
        texts: list[str | None] = []
        outcomes: list[RecordOutcome | None] = []
        keys: list[str | None] = []
        for offset, record in enumerate(records):
            index = start + offset
            try:
                text = self.spec.render(record)
                # Without a cache no key is needed; any non-empty placeholder marks "to do".
                key = (
                    extraction_key(self.model, self.spec, text)
                    if self.cache is not None
                    else f"#{offset}"
                )
            except InvalidInputError as exc:
                texts.append(None)
                keys.append(None)
                outcomes.append(_failed(index, self.key_of(index, record), "skipped", str(exc)))
                continue
            except ChatError:
                raise  # the plugin's own run-level refusal (a template that fits no record)
            except Exception as exc:  # this record's own fault: its outcome, not the chunk's
                texts.append(None)
                keys.append(None)
                outcomes.append(_unexpected(index, self.key_of(index, record), exc, "not sent"))
                continue
            texts.append(text)
            keys.append(key)
            outcomes.append(None)
        try:
            cached = self.cache.get_many(k for k in keys if k) if self.cache else {}
        except LedgerError:  # unreachable: each record's claim says so below, none is sent
            cached = {}
        pending = []
        for offset, (maybe_text, maybe_key) in enumerate(zip(texts, keys, strict=True)):
            if maybe_text is None or maybe_key is None:
                on_done()
                continue
            index, text, key = start + offset, maybe_text, maybe_key
            if key in cached:
                outcomes[offset] = self._hit(cached[key], index, records[offset])
                on_done()
                continue
            item = _Pending(offset, index, records[offset], text, key)
            pending.append(self._one(item, outcomes, on_done))
        if self.claims is None:
            await asyncio.gather(*pending)
        else:
            async with self.claims:  # renews the leases this chunk holds while it runs
                await asyncio.gather(*pending)
        return [o for o in outcomes if o is not None]

    def _hit(self, stored: str, index: int, record: Record) -> RecordOutcome:
        """A record's outcome from the ledger (finished earlier, or by another worker)."""
        return cached_outcome(stored, index, self.key_of(index, record))

    async def _claim(self, key: str) -> str | None:
        """Claim `key` with a place in the window (None), or the outcome another worker stored.

        A record claimed elsewhere is awaited outside the window: a chunk waiting for
        another never holds claims it has not started on, so chunks cannot deadlock.
        """
        assert self.claims is not None
        await self.window.acquire()
        try:
            if await self.claims.try_claim(key):
                return None
        except BaseException:
            self.window.release()
            raise
        self.window.release()
        stored = await self.claims.wait(key)
        if stored is None:
            await self.window.acquire()  # the holder let it go: the claim is now ours
        return stored

    async def _one(
        self,
        item: _Pending,
        outcomes: list[RecordOutcome | None],
        on_done: Callable[[], None],
    ) -> None:
        offset, index, record, key = item.offset, item.index, item.record, item.key
        if self.claims is not None:
            try:
                stored = await self._claim(key)
            except Exception as exc:  # not sent, so not paid: quarantined, tried next run
                reason = f"the record ledger failed ({type(exc).__name__}: {exc}); not sent"
                if isinstance(exc, LedgerError):  # it names the ledger and the patience
                    reason = f"{exc}; not sent"
                outcomes[offset] = _failed(index, self.key_of(index, record), "error", reason)
                on_done()
                return
            if stored is not None:
                outcomes[offset] = self._hit(stored, index, record)
                on_done()
                return
            try:
                await self._settle(item, outcomes)
            finally:
                await self.claims.release(key)  # not finished (else completed): others may try
                self.window.release()
        else:
            await self._settle(item, outcomes)
        on_done()

    async def _settle(self, item: _Pending, outcomes: list[RecordOutcome | None]) -> None:
        """`_pay`, with whatever it raises ending as this record's `error` outcome.

        An exception here is this record's (its validation's own faults are already
        `invalid` answers): the record is quarantined as `error`, not stored in the
        ledger, so the next run tries it again; the other records go on.
        """
        try:
            outcomes[item.offset] = await self._pay(item.index, item.record, item.text, item.key)
        except Exception as exc:
            key_name = self.key_of(item.index, item.record)
            outcomes[item.offset] = _unexpected(item.index, key_name, exc, "not stored")
            run_logger().warning(
                "record %s failed unexpectedly; quarantined as error", key_name, exc_info=True
            )

    async def _pay(self, index: int, record: Record, text: str, key: str) -> RecordOutcome:
        """The record's outcome after its extraction (and the task tier's rounds), stored in
        the ledger when final."""
        policy = self.runner.protection.policy
        spent: list[Extraction[Any]] = []  # earlier rounds were paid for too
        for runs in itertools.count(1):  # the task tier, bounded by `task_retry_delay`
            errors: list[BaseException] = []
            async with self.semaphore:
                extraction = await run_extraction(
                    runner_call(self.runner, errors), self.spec.schema_class, text, self.options
                )
            delay = task_retry_delay(errors[-1] if errors else None, runs, policy)
            if delay is None:
                break
            self.tier_rounds += 1
            if self.tier_rounds <= TIER_LINES:
                last = self.tier_rounds == TIER_LINES
                run_logger().warning(
                    "record %s: %s; its extraction runs again in %.3g s (round %d)%s",
                    self.key_of(index, record),
                    extraction.reason,
                    delay,
                    runs + 1,
                    "; other records of this chunk that wait too are not logged" if last else "",
                )
            spent.append(extraction)
            await asyncio.sleep(delay)
        outcome = _with_earlier_rounds(
            record_outcome(index, self.key_of(index, record), extraction), spent
        )
        if self.claims is not None and outcome.outcome in FINAL_OUTCOMES:
            try:
                await self.claims.complete(key, outcome.model_dump_json())  # checkpoint it now
            except Exception:  # paid and decided: the outcome stands; the next run asks again
                run_logger().warning(
                    "the record ledger could not store record %s; its outcome stands, the"
                    " next run asks for it again",
                    outcome.key,
                    exc_info=True,
                )
        return outcome


def _with_earlier_rounds(outcome: RecordOutcome, spent: list[Extraction[Any]]) -> RecordOutcome:
    """Add what earlier rounds of the same record cost to its final outcome."""
    if not spent:
        return outcome
    usage, calls = outcome.usage, outcome.calls
    costs = [c for c in (outcome.cost_usd, *(e.cost_usd for e in spent)) if c is not None]
    for earlier in spent:
        usage, calls = usage + earlier.usage, calls + earlier.calls
    cost = round(sum(costs), 10) if costs else None
    return outcome.model_copy(update={"usage": usage, "calls": calls, "cost_usd": cost})


_failed = failed_outcome


def _unexpected(index: int, key: str, exc: Exception, what: str) -> RecordOutcome:
    """The `error` outcome of a record whose own path raised `exc` (tried again next run)."""
    return _failed(index, key, "error", unexpected_reason(exc, what))


def _chunk_run_name(parameters: dict[str, Any]) -> str:
    label = parameters.get("label")
    spec = parameters.get("spec")
    schema = getattr(getattr(spec, "schema_class", None), "__name__", "records")
    if label:
        return f"extract {schema} {label}"
    return f"extract {schema} chunk of {len(parameters.get('records') or [])}"


async def _aextract_chunk(
    chat_model: ChatModel | str,
    spec: ExtractionSpec,
    records: Sequence[Record],
    concurrency: int = 16,
    cache: str | Path | bool = True,
    start_index: int = 0,
    progress: bool | None = None,
    label: str | None = None,
    concurrency_pool: str | None = None,
) -> ChunkReport:
    """Extract `spec` from every record, `concurrency` at a time, inside one task.

    Args:
        chat_model: A `ChatModel` block, or the name of a saved one.
        spec: What to extract (`ExtractionSpec`: schema, prompt, instructions, mode, ...).
        records: Texts, or dicts rendered through the spec's prompt.
        concurrency: The most HTTP calls in flight at once (the real level adapts below it).
        cache: The record ledger: True for the default (`PREFECT_OPENAI_CHAT_CACHE` when
            set, else a SQLite file under PREFECT_HOME), a SQLite path, a
            `postgresql://` URL shared by every host, or False for none.
        start_index: Index of the first record (for reports over several chunks).
        progress: Show a progress bar (default: when stderr is a terminal).
        label: Shown in the task run name, e.g. "chunk 3/40".
        concurrency_pool: The name under which the running flow shares one concurrency
            gate between its chunks (see `share_concurrency`); None: this chunk's own.

    Returns:
        A `ChunkReport` with one `RecordOutcome` per record and the totals.
    """
    if concurrency < 1:
        raise InvalidInputError(f"concurrency must be at least 1, got {concurrency}")
    model, runner = await assemble(chat_model)
    gate = gate_for(concurrency_pool, concurrency)
    runner.protection.gate = gate
    name = spec.schema_class.__name__
    ledger = record_ledger(cache, connect=False)
    try:
        with _progress(len(records), name, progress) as advance:
            run = _ChunkRun(runner, model, spec, concurrency, ledger)
            outcomes = await run.run(records, start_index, advance)
    finally:
        if ledger is not None:
            ledger.close()
    report = ChunkReport(records=outcomes)
    run_logger().info(
        "extract %s chunk: %d records, %d valid, %d to quarantine, %s,"
        " %d tokens paid in this run, concurrency %d of %d (lowest %d)",
        name,
        report.total,
        report.valid,
        report.failed,
        ledger_phrase(sum(o.cached for o in outcomes), report.total),
        sum(o.usage.total_tokens for o in outcomes if not o.cached),
        gate.limit,
        gate.maximum,
        gate.lowest,
    )
    return report


async def _aextract_batch(
    chat_model: ChatModel | str,
    schema: type[BaseModel],
    records: Sequence[Record],
    prompt: str | None = None,
    instructions: str | None = None,
    mode: str = "auto",
    max_reprompts: int = 2,
    token_budget: int | None = None,
    concurrency: int = 16,
    key_field: str | None = None,
    cache: str | Path | bool = True,
    start_index: int = 0,
    progress: bool | None = None,
    batch_label: str | None = None,
    concurrency_pool: str | None = None,
) -> ChunkReport:
    """Deprecated: `extract_chunk` with the spec's fields as keyword arguments."""
    spec = ExtractionSpec(
        schema=ensure_model(schema),
        prompt=prompt,
        instructions=instructions,
        mode=mode,
        max_reprompts=max_reprompts,
        token_budget=token_budget,
        key_field=key_field,
    )
    return await _aextract_chunk(
        chat_model, spec, records, concurrency, cache, start_index, progress, batch_label,
        concurrency_pool,
    )  # fmt: skip


def _batch_run_name(parameters: dict[str, Any]) -> str:
    label = parameters.get("batch_label")
    schema = getattr(parameters.get("schema"), "__name__", "records")
    if label:
        return f"extract {schema} {label}"
    return f"extract {schema} batch of {len(parameters.get('records') or [])}"


class _progress:
    """A rich progress bar on a terminal; a no-op elsewhere (or when told so)."""

    def __init__(self, total: int, label: str, wanted: bool | None) -> None:
        show = sys.stderr.isatty() if wanted is None else wanted
        self._bar: Any = None
        if show and total:
            from rich.progress import Progress

            self._bar = Progress(transient=True)
            self._task = self._bar.add_task(f"extract {label}", total=total)

    def __enter__(self) -> Callable[[], None]:
        if self._bar is None:
            return lambda: None
        self._bar.start()
        return lambda: self._bar.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


_CHUNK_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "task_run_name": _chunk_run_name}
_LEGACY_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "task_run_name": _batch_run_name}

aextract_chunk = task(name="aextract_chunk", **_CHUNK_OPTIONS)(_aextract_chunk)
_CHUNK_SIGNATURE = inspect.signature(_aextract_chunk)


@functools.wraps(sync_twin(_aextract_chunk))
def _extract_chunk(*args: Any, **kwargs: Any) -> ChunkReport:
    """The sync twin of `aextract_chunk`: on its pool's `shared_loop` when it has one."""
    pool = _CHUNK_SIGNATURE.bind(*args, **kwargs).arguments.get("concurrency_pool")
    loop = loop_for(pool)
    coro = _aextract_chunk(*args, **kwargs)
    return loop.run(coro) if loop is not None else run_sync(coro)


extract_chunk = task(name="extract_chunk", **_CHUNK_OPTIONS)(_extract_chunk)

# The names before `extract_chunk`; `prefect_openai_chat.tasks` warns when they are imported.
legacy_aextract_batch = task(name="aextract_batch", **_LEGACY_OPTIONS)(_aextract_batch)
legacy_extract_batch = task(name="extract_batch", **_LEGACY_OPTIONS)(sync_twin(_aextract_batch))
