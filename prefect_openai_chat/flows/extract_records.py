"""`extract_records`: the ETL flow that turns free-text records into validated rows.

Every input record ends exactly once: valid rows in `output` (JSONL, Parquet or
SQLite, by extension), everything else in `quarantine` with the reason, the
attempts and the last raw output. A re-run pays only for records it has not done
(the record cache is keyed on content, schema, prompt, model and generation
parameters).

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
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prefect import unmapped
from pydantic import BaseModel

from prefect_openai_chat.blocks import ChatModel
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.flows.checks import check_source_against_prompt, resolve_schema
from prefect_openai_chat.flows.sinks import Sink, check_distinct, check_writable, open_outputs
from prefect_openai_chat.flows.sources import (
    Keys,
    SourceItem,
    check_source,
    count_records,
    read_records,
    source_flow,
)
from prefect_openai_chat.flows.summary import RunArtifacts, RunTotals
from prefect_openai_chat.results import RecordOutcome
from prefect_openai_chat.tasks import events
from prefect_openai_chat.tasks._common import run_logger
from prefect_openai_chat.tasks.batch import extract_batch, record_outcome, render
from prefect_openai_chat.tasks.extract import extract

# The parameter is called `schema`, as users expect; pydantic warns that the name shadows
# an attribute of the model Prefect builds to validate flow parameters. That is harmless.
warnings.filterwarnings("ignore", message='Field name "schema" in "Extract_Records')


def _batches(items: Iterator[SourceItem], size: int) -> Iterator[list[SourceItem]]:
    while batch := list(itertools.islice(items, size)):
        yield batch


def _quarantine_row(
    item: SourceItem, key: str, outcome: RecordOutcome | None, reason: str
) -> dict[str, Any]:
    return {
        "line": item.line,
        "key": key,  # the same key the output rows use (a batch's own index would repeat)
        "reason": reason,
        "outcome": outcome.outcome if outcome else item.kind,
        "attempts": outcome.attempts if outcome else 0,
        "record": item.record if item.record is not None else item.raw,
        "last_raw_output": outcome.last_raw_output if outcome else None,
    }


def _per_record(
    chat_model: ChatModel | str,
    schema: type[BaseModel],
    records: list[dict[str, Any]],
    prompt: str,
    instructions: str | None,
    mode: str,
    max_reprompts: int,
) -> list[RecordOutcome]:
    """One `extract` task per record, for small inputs a user wants to see record by record."""
    outcomes: list[RecordOutcome | None] = [None] * len(records)
    texts: dict[int, str] = {}
    for index, record in enumerate(records):
        try:
            texts[index] = render(record, prompt)
        except InvalidInputError as exc:
            outcomes[index] = RecordOutcome(
                index=index, key=str(index), ok=False, outcome="skipped", reason=str(exc)
            )
    # Only the texts are mapped: a block and the strings are iterable, `map` would split them.
    futures = extract.map(
        unmapped(chat_model),
        unmapped(schema),
        list(texts.values()),
        unmapped(instructions),
        unmapped(mode),
        unmapped(max_reprompts),
    )
    for index, future in zip(texts, futures, strict=True):
        try:
            extraction = future.result()
        except Exception as exc:  # as in extract_batch: quarantined with the reason, run goes on
            outcomes[index] = RecordOutcome(
                index=index,
                key=str(index),
                ok=False,
                outcome="error",
                attempts=1,
                reason=f"the call failed: {type(exc).__name__}: {exc}",
            )
            continue
        outcomes[index] = record_outcome(index, str(index), extraction)
    return [o for o in outcomes if o is not None]


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
) -> dict[str, Any]:
    """Extract `schema` from every record of `source` into `output`, the rest into `quarantine`.

    Args:
        source: A .jsonl or .csv path (streamed), or an iterable of dicts (a generator too).
        schema: A pydantic model, or its import path "package.module:Model".
        chat_model: A `ChatModel` block, or the name of a saved one.
        prompt: A `str.format` template over a record's fields.
        output: Where valid rows go: .jsonl, .parquet or .sqlite.
        quarantine: Where failed records go, with the reason: .jsonl, .parquet or .sqlite.
        key_field: The record field that identifies it in outputs (else its line); a key
            seen before sends the later record to quarantine as a duplicate.
        batch_size: Records per `extract_batch` task.
        concurrency: Extractions in flight inside a batch.
        instructions: What to extract, in words.
        mode: `auto`, `json_schema`, `json_object` or `tools`.
        max_reprompts: Re-asks after an invalid answer, per record.
        per_record_tasks: One `extract` task per record instead of batches (small inputs).
        cache: True for the default record cache, a path for another, False for none.

    Returns:
        The run's totals; `records == valid + quarantined` always.
    """
    started = time.perf_counter()
    model_cls = resolve_schema(schema)
    check_source(source)
    if batch_size < 1 or concurrency < 1:
        raise InvalidInputError("batch_size and concurrency must be at least 1")
    out_path = check_writable(output, "output")
    quarantine_path = check_writable(quarantine, "quarantine")
    check_distinct(source, out_path, quarantine_path, cache)
    if not isinstance(source, str | Path):
        source = list(source)  # an iterable is read twice: once here, once below
    check_source_against_prompt(source, prompt)
    keys = Keys(key_field)
    total = count_records(source)
    batches_total = None if total is None else max(1, -(-total // batch_size))
    totals = RunTotals()
    trips_before = events.trips
    artifacts = RunArtifacts()
    logger = run_logger()
    with open_outputs(out_path, quarantine_path, model_cls) as (rows, bad):
        for number, batch in enumerate(_batches(read_records(source, keys), batch_size), start=1):
            label = f"batch {number}/{batches_total or '?'}"
            _run_batch(
                batch,
                label,
                chat_model,
                model_cls,
                prompt,
                key_field,
                concurrency,
                instructions,
                mode,
                max_reprompts,
                per_record_tasks,
                cache,
                rows,
                bad,
                totals,
            )
            artifacts.progress(totals.records, total)
        _check_exactly_once(totals, rows, bad)
    totals.circuit_trips = events.trips - trips_before
    totals.count_keys(keys)
    wall = round(time.perf_counter() - started, 3)
    extra = {"wall_time_s": wall, "output": str(out_path), "quarantine": str(quarantine_path)}
    artifacts.finish(totals, extra)
    summary = {**totals.as_dict(), **extra}
    logger.info(
        "extract-records: %d records, %d valid, %d quarantined, %d tokens, $%.4f, %.1fs",
        totals.records,
        totals.valid,
        totals.quarantined,
        summary["total_tokens"],
        totals.cost_usd,
        wall,
    )
    return summary


def _run_batch(
    batch: list[SourceItem],
    label: str,
    chat_model: ChatModel | str,
    schema: type[BaseModel],
    prompt: str,
    key_field: str | None,
    concurrency: int,
    instructions: str | None,
    mode: str,
    max_reprompts: int,
    per_record_tasks: bool,
    cache: bool | str,
    rows: Sink,
    bad: Sink,
    totals: RunTotals,
) -> None:
    readable = [item for item in batch if item.record is not None]
    for item in batch:
        if item.record is None:
            reason = item.error or "unreadable"
            totals.add(RecordOutcome(index=item.line, key=item.key, ok=False, reason=reason))
            totals.add_quarantined(item.line, item.key, reason)
            bad.write(_quarantine_row(item, item.key, None, reason))
    if not readable:
        return
    records = [item.record for item in readable if item.record is not None]
    if per_record_tasks:
        outcomes = _per_record(
            chat_model, schema, records, prompt, instructions, mode, max_reprompts
        )
    else:
        report = extract_batch.with_options(task_run_name=f"extract {schema.__name__} {label}")(
            chat_model,
            schema,
            records,
            prompt=prompt,
            instructions=instructions,
            mode=mode,
            max_reprompts=max_reprompts,
            concurrency=concurrency,
            key_field=key_field,
            cache=cache,
            progress=False,
            batch_label=label,
        )
        outcomes = report.records
    for item, outcome in zip(readable, outcomes, strict=True):
        key = item.key
        totals.add(outcome)
        if outcome.ok:
            rows.write({"_key": key, **(outcome.value or {})})
        else:
            reason = outcome.reason or outcome.outcome
            totals.add_quarantined(item.line, key, reason)
            bad.write(_quarantine_row(item, key, outcome, reason))


def _check_exactly_once(totals: RunTotals, rows: Sink, bad: Sink) -> None:
    if totals.records != rows.rows + bad.rows or rows.rows != totals.valid:
        raise RuntimeError(
            f"bookkeeping error: {totals.records} records in, {rows.rows} written and"
            f" {bad.rows} quarantined; the output files were not replaced"
        )
