"""`extract_records`: the ETL flow that turns free-text records into validated rows.

Every input record ends exactly once: valid rows in `output` (JSONL, Parquet or
SQLite, by extension), everything else in `quarantine` with the reason, the
attempts and the last raw output. A re-run pays only for records it has not done
(the record ledger is keyed on content, schema, prompt, model and generation
parameters), and runs sharing a ledger never pay twice for one record.

Example:
    ```python
    from prefect_openai_chat.flows import extract_records

    summary = extract_records(
        source="tickets.jsonl",
        schema="prefect_openai_chat.examples.tickets:SupportTicket",
        chat_model="nightly-chat-model",
        prompt="Subject: {subject}\\n\\n{body}",
        output="out/tickets.parquet",
        quarantine="out/quarantine.jsonl",
        key_field="ticket_id",
    )
    assert summary["records"] == summary["valid"] + summary["quarantined"]
    ```
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.futures import PrefectFuture, as_completed
from prefect.types import SecretDict
from pydantic import BaseModel

from prefect_openai_chat.blocks import ChatModel
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction.ledger import (
    ledger_file,
    ledger_kind,
    ledger_role,
    open_ledger,
)
from prefect_openai_chat.flows.batch_api import check_via, ledger_folder, run_batch_night
from prefect_openai_chat.flows.checks import check_source_against_prompt, resolve_schema
from prefect_openai_chat.flows.shards import count_in_shard, in_shard
from prefect_openai_chat.flows.sinks import (
    RowNotStorable,
    Sink,
    Target,
    check_distinct,
    check_writable,
    hold_outputs,
    open_outputs,
)
from prefect_openai_chat.flows.sources import (
    Keys,
    SourceItem,
    check_source,
    count_records,
    read_records,
    source_flow,
)
from prefect_openai_chat.flows.summary import RunArtifacts, RunTotals, summary_line
from prefect_openai_chat.resilience import AdaptiveConcurrency
from prefect_openai_chat.results import BatchReport, RecordOutcome, bounded_reason
from prefect_openai_chat.storage import Location, plain_options
from prefect_openai_chat.tasks import batch as batch_tasks
from prefect_openai_chat.tasks import events
from prefect_openai_chat.tasks._common import run_logger
from prefect_openai_chat.tasks.batch import extract_batch, share_concurrency
from prefect_openai_chat.telemetry import observe_run


def _batches(items: Iterator[SourceItem], size: int) -> Iterator[list[SourceItem]]:
    while batch := list(itertools.islice(items, size)):
        yield batch


def _quarantine_row(
    item: SourceItem, key: str, outcome: RecordOutcome | None, reason: str
) -> dict[str, Any]:
    return {
        "line": item.line,
        "key": key,  # the same key the output rows use (a batch's own index would repeat)
        "reason": bounded_reason(reason),  # secrets masked, at most 4 KiB
        "outcome": outcome.outcome if outcome else item.kind,
        "attempts": outcome.calls if outcome else 0,  # chat completions made for it
        "record": item.record if item.record is not None else item.raw,
        "last_raw_output": outcome.last_raw_output if outcome else None,
    }


@source_flow(name="extract-records", log_prints=True)
def extract_records(
    source: str | Iterable[Any],  # items are checked one by one: a non-dict is quarantined
    schema: Any,
    chat_model: ChatModel | str,
    prompt: str,
    output: str,
    quarantine: str,
    key_field: str | None = None,
    batch_size: int = 100,
    concurrency: int = 16,
    instructions: str | None = None,
    mode: str = "auto",
    max_reprompts: int = 2,
    per_record_tasks: bool = False,
    cache: bool | str = True,
    via: str = "online",
    batch_options: dict[str, Any] | None = None,
    shards: int = 1,
    shard_deployment: str | None = None,
    allow_local_paths: bool = False,
    return_rows: bool = False,
    storage_options: dict[str, Any] | SecretDict | None = None,
) -> dict[str, Any]:
    """Extract `schema` from every record of `source` into `output`, the rest into `quarantine`.

    Args:
        source: A .jsonl or .csv path or URL (`s3://`, `gs://`, `az://`, any fsspec URL;
            streamed), an iterable of dicts (a generator too), or a pandas or polars
            DataFrame or a pyarrow Table (one record per row; NaN, NaT and nulls as null,
            numpy scalars as numbers: docs/concepts/exactly-once.md).
        schema: A pydantic model, or its import path "package.module:Model".
        chat_model: A `ChatModel` block, or the name of a saved one.
        prompt: A `str.format` template over a record's fields.
        output: Where valid rows go: .jsonl, .parquet or .sqlite, a path or a URL.
        quarantine: Where failed records go, with the reason: .jsonl, .parquet or .sqlite;
            on the same kind of storage as `output` (both local, or both URLs).
        key_field: The record field that identifies it in outputs (else its line); a key
            seen before sends the later record to quarantine as a duplicate.
        batch_size: Records per `extract_batch` task (the unit of task runs in the UI).
        concurrency: The most HTTP calls in flight over the whole run; batches overlap.
        instructions: What to extract, in words.
        mode: `auto`, `json_schema`, `json_object` or `tools`.
        max_reprompts: Re-asks after an invalid answer, per record.
        per_record_tasks: One `extract_batch` task run per record, each visible in the UI,
            instead of batches of `batch_size` (small inputs).
        cache: The record ledger: True for the default (`PREFECT_OPENAI_CHAT_CACHE` when
            set, else a SQLite file under PREFECT_HOME), a SQLite path, a `postgresql://`
            URL shared by every worker on every host (docs/scale-out.md), or False.
        via: `online` (answers now), or `batch`: the OpenAI Batch API, at half the price,
            answered within 24 hours (see docs/concepts/batch-api.md).
        batch_options: With `via="batch"`: `poll_interval_s`, `reask`, `unfinished`,
            `enqueued_token_limit`, ... (`BatchOptions`).
        shards: Split a file source into this many line ranges, each run by its own
            worker (see docs/scale-out.md); `concurrency` is then per shard.
        shard_deployment: The deployment that runs one shard ("extract-records-shard/shard"
            of a work pool); without it the shards are tasks of this flow's task runner.
        allow_local_paths: With `shard_deployment`: run although the ledger is a SQLite file
            or the paths are local, because every worker of the pool runs on this host (or
            sees the paths through a shared mount); refused otherwise (docs/scale-out.md).
        return_rows: Add the valid rows (dicts, in output order, as written) to the summary
            as `rows`, for the next step of the flow; they are held in memory for the whole
            run, so for large nights read `output` instead. Not with `shards`.
        storage_options: Keyword arguments for the filesystem of URLs (fsspec's
            `storage_options`: `key`, `secret`, `client_kwargs`, ...); credentials are
            masked in the flow run's parameters, and a `SecretDict` masks every value
            (docs/scale-out.md). Without it, each store's own environment variables apply.

    Returns:
        The run's totals; `records == valid + quarantined` always.
    """
    check_via(via, per_record_tasks)
    if shards != 1 or shard_deployment is not None:
        if return_rows:
            raise InvalidInputError(
                "return_rows=True keeps the rows of one process; a sharded run's rows are in"
                " its output: read the output file instead, or run with shards=1"
            )
        if via != "online" or per_record_tasks:
            raise InvalidInputError(
                "shards run online batches: use via='online' and per_record_tasks=False with"
                " shards, or shards=1 for the Batch API or per-record task runs"
            )
        from prefect_openai_chat.flows.fan_out import fan_out

        return fan_out(
            source, schema, chat_model, prompt, output, quarantine, shards, shard_deployment,
            key_field=key_field, batch_size=batch_size, concurrency=concurrency,
            instructions=instructions, mode=mode, max_reprompts=max_reprompts, cache=cache,
            allow_local_paths=allow_local_paths, storage_options=storage_options,
        )  # fmt: skip
    started = time.perf_counter()
    check_via(via, per_record_tasks)
    run = _check_run(
        source, schema, output, quarantine, batch_size, concurrency, cache, prompt, via,
        storage_options=storage_options, key_field=key_field,
    )  # fmt: skip
    if per_record_tasks:  # the same per-record logic as batches, one task run per record
        batch_size = 1
    gate = AdaptiveConcurrency(concurrency, name="extract-records")
    job = _Job(
        chat_model, run.schema, prompt, key_field, concurrency, instructions, mode, max_reprompts,
        cache, share_concurrency(f"extract-records-{uuid.uuid4().hex}", gate),
    )  # fmt: skip
    keys = Keys(key_field)
    total = count_in_shard(run.source, count_records(run.source))
    totals, artifacts, trips = RunTotals(), RunArtifacts(), events.count_trips()
    with (
        observe_run("extract_records", via=via) as span,
        open_outputs(run.output, run.quarantine, run.schema) as (rows, bad),
    ):
        window = _Window(job, rows, bad, totals, lambda: artifacts.progress(totals.records, total))
        window.kept = [] if return_rows else None
        items = in_shard(read_records(run.source, keys))  # a shard's lines only, in a shard
        if via == "batch":
            run_batch_night(job, window, items, batch_options, artifacts)
        else:
            unit = "record" if per_record_tasks else "batch"
            window.submit_all(items, batch_size, unit, total)
        window.drain()
        _check_exactly_once(totals, rows, bad)
        span.totals(totals.as_dict())
    totals.circuit_trips = trips.stop()
    totals.count_keys(keys)
    extra = {
        "wall_time_s": round(time.perf_counter() - started, 3),
        "concurrency": f"{gate.limit} of {concurrency} (lowest {gate.lowest})",
        "output": str(run.output),
        "quarantine": str(run.quarantine),
    }
    artifacts.finish(totals, extra)
    summary = _summary(totals, extra)
    if window.kept is not None:
        summary["rows"] = window.kept  # after the artifact: the UI shows totals, not rows
    return summary


@dataclass(frozen=True)
class _Run:
    """A run's checked inputs: the schema class, the source, where rows go.

    `output` and `quarantine` are `Path`s, or `Location`s for URLs (a sharded run's too:
    its parts then live under the output's URL): typed `Any` for the sharded code.
    """

    schema: type[BaseModel]
    source: str | Path | Location | list[Any]
    output: Any  # Target
    quarantine: Any  # Target


def _check_run(
    source: str | Path | Iterable[Any],
    schema: Any,
    output: str,
    quarantine: str,
    batch_size: int,
    concurrency: int,
    cache: bool | str,
    prompt: str,
    via: str = "online",
    folders: dict[str, Path] | None = None,
    storage_options: Any = None,
    key_field: str | None = None,
) -> _Run:
    """Every check that can fail before the first call; InvalidInputError says what to fix.

    The one pre-flight of a run, sharded (`fan_out`, which adds its part folder to
    `folders`) or not: no two roles on one file (the ledger as `open_ledger` resolves
    it), no other run writing the outputs, a PostgreSQL ledger that answers. URLs are
    opened with `storage_options` (a dict or a `SecretDict`).
    """
    model_cls = resolve_schema(schema)
    options = plain_options(storage_options)
    found = check_source(source, options)  # a URL as a Location
    if batch_size < 1 or concurrency < 1:
        raise InvalidInputError("batch_size and concurrency must be at least 1")
    out_path = check_writable(output, "output", options)
    quarantine_path = check_writable(quarantine, "quarantine", options)
    roles: dict[str, Target | None] = {
        "source": _source_file(found),
        "output": out_path,
        "quarantine": quarantine_path,
        ledger_role(cache): ledger_file(cache, batch_tasks.default_cache_path),
    }
    if via == "batch":
        roles["the Batch API's batch-ledger folder"] = ledger_folder(cache)
    check_distinct(roles, folders)
    with hold_outputs(out_path, quarantine_path):  # refused now if another run writes them
        pass
    if ledger_kind(cache) == "postgres":  # a bad URL or a database down: before any call
        open_ledger(cache).close()  # type: ignore[union-attr]
    checked = found if isinstance(found, str | Path | Location) else list(found)  # read twice
    check_source_against_prompt(checked, prompt, key_field)
    return _Run(model_cls, checked, out_path, quarantine_path)


def _source_file(source: Any) -> Target | None:
    """The file a source is read from, for the path-collision check; None for an iterable."""
    if isinstance(source, Location | Path):
        return source
    return Path(source) if isinstance(source, str) else None


def _summary(totals: RunTotals, extra: dict[str, Any]) -> dict[str, Any]:
    """The run's totals and facts, logged in one line."""
    summary = {**totals.as_dict(), **extra}
    run_logger().info("%s", summary_line(summary))
    return summary


@dataclass(frozen=True)
class _Job:
    """What every batch of one run is asked to do."""

    chat_model: ChatModel | str
    schema: type[BaseModel]
    prompt: str
    key_field: str | None
    concurrency: int
    instructions: str | None
    mode: str
    max_reprompts: int
    cache: bool | str
    concurrency_pool: str


class _Window:
    """Batches in flight at once, written out in input order: no barrier between batches.

    A batch is the unit of checkpointing and of the UI's task runs, not of waiting:
    while the slowest records of one batch finish, the next batches already fill the
    HTTP slots (all batches share one concurrency gate, so `concurrency` still bounds
    the calls in flight). Finished batches wait in memory for the ones before them, at
    most `BUFFERED` windows of them, so the output keeps the input's order.
    """

    BUFFERED = 8  # finished batches kept per batch in flight, waiting for an earlier one

    def __init__(
        self, job: _Job, rows: Sink, bad: Sink, totals: RunTotals, on_progress: Callable[[], Any]
    ) -> None:
        self.job, self.rows, self.bad, self.totals = job, rows, bad, totals
        self.on_progress = on_progress
        self.pending: dict[PrefectFuture[BatchReport], list[SourceItem]] = {}  # input order
        self.finished: set[PrefectFuture[BatchReport]] = set()  # filled from task threads
        self.kept: list[dict[str, Any]] | None = None  # the valid rows, with `return_rows`

    def submit_all(
        self, items: Iterator[SourceItem], batch_size: int, unit: str, total: int | None
    ) -> None:
        """Start every batch of `items`, keeping a few more in flight than `concurrency` fills."""
        batches_total = None if total is None else max(1, -(-total // batch_size))
        in_flight = 2 + -(-self.job.concurrency // batch_size)
        for number, batch in enumerate(_batches(items, batch_size), start=1):
            self.submit(batch, f"{unit} {number}/{batches_total or '?'}", in_flight)

    def submit(self, batch: list[SourceItem], label: str, in_flight: int) -> None:
        """Start `batch` as an `extract_batch` task once fewer than `in_flight` are running."""
        readable = self.readable(batch)
        if not readable:
            return
        while (
            len(self.pending) - len(self.finished) >= in_flight
            or len(self.pending) >= in_flight * self.BUFFERED
        ):
            self._wait_for_one()
        job = self.job
        task = extract_batch.with_options(task_run_name=f"extract {job.schema.__name__} {label}")
        future = task.submit(
            job.chat_model,
            job.schema,
            [item.record for item in readable if item.record is not None],
            prompt=job.prompt,
            instructions=job.instructions,
            mode=job.mode,
            max_reprompts=job.max_reprompts,
            concurrency=job.concurrency,
            key_field=job.key_field,
            cache=job.cache,
            progress=False,
            batch_label=label,
            concurrency_pool=job.concurrency_pool,
        )
        self.pending[future] = readable
        future.add_done_callback(self.finished.add)

    def drain(self) -> None:
        """Wait for every batch still in flight and write it out."""
        while self.pending:
            self._wait_for_one()

    def _wait_for_one(self) -> None:
        """Wait until one more batch finishes; write out the finished ones at the head."""
        running = [f for f in self.pending if f not in self.finished]
        if running:
            next(as_completed(running))
        while self.pending:
            head = next(iter(self.pending))
            if head not in self.finished:
                break
            self.finished.discard(head)
            self._write(self.pending.pop(head), head.result().records)

    def readable(self, batch: list[SourceItem]) -> list[SourceItem]:
        """The records that parsed; the others go to quarantine now."""
        for item in batch:
            if item.record is None:
                reason = item.error or "unreadable"
                self.totals.add(
                    RecordOutcome(index=item.line, key=item.key, ok=False, reason=reason)
                )
                self.totals.add_quarantined(item.line, item.key, reason)
                self.bad.write(_quarantine_row(item, item.key, None, reason))
        return [item for item in batch if item.record is not None]

    def _write(self, readable: list[SourceItem], outcomes: list[RecordOutcome]) -> None:
        """Write each record's row: valid rows to the output, the others to quarantine.

        A valid row the output cannot hold (`RowNotStorable`, e.g. a ledger entry stored
        `ok` before the storable-value rule) goes to quarantine with the reason instead:
        it is counted once, by where it was written.
        """
        for item, outcome in zip(readable, outcomes, strict=True):
            key = item.key
            if outcome.ok:
                outcome = self._write_row(key, outcome)
            self.totals.add(outcome)
            if not outcome.ok:
                reason = outcome.reason or outcome.outcome
                self.totals.add_quarantined(item.line, key, reason)
                self.bad.write(_quarantine_row(item, key, outcome, reason))
        self.on_progress()

    def _write_row(self, key: str, outcome: RecordOutcome) -> RecordOutcome:
        """The outcome after writing its row: itself, or `invalid` when the row is refused."""
        row = {"_key": key, **(outcome.value or {})}
        try:
            self.rows.write(row)
        except RowNotStorable as exc:
            return outcome.model_copy(
                update={"ok": False, "outcome": "invalid", "reason": f"not storable: {exc}"}
            )
        if self.kept is not None:
            self.kept.append(row)
        return outcome


def _check_exactly_once(totals: RunTotals, rows: Sink, bad: Sink) -> None:
    if totals.records != rows.rows + bad.rows or rows.rows != totals.valid:
        raise RuntimeError(
            f"bookkeeping error: {totals.records} records in, {rows.rows} written and"
            f" {bad.rows} quarantined; the output files were not replaced"
        )
