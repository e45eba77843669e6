"""The Batch API runner: `RunOptions(via="batch")`, a night's extractions through the
OpenAI Batch API, written out through the run's `RecordWindow`.

The Prefect side of `extraction.batch_api`: the records' first requests go out in
batches (half the price, answered within 24 hours), a polling task waits for them
and shows their `request_counts` in the run's progress artifact, and each answer
goes through the same parse, repair and validation as an online call. What still
needs a call afterwards (a re-ask, more room, a failed line) is sent online by
default. The batch ids are recorded before any wait, so a restarted run resumes
them, and finished records go to the record cache, so a re-run pays nothing.
Every error leaving this path is redacted first (`redaction.redact_exception`), as on
the online path: task and flow states, logs and events never show the key.

Example:
    ```python
    from prefect_openai_chat import ExtractionSpec, RunOptions
    from prefect_openai_chat.flows import extract_records

    summary = extract_records(
        source="tickets.jsonl",
        output="out/tickets.jsonl",
        quarantine="out/quarantine.jsonl",
        spec=ExtractionSpec(
            schema="prefect_openai_chat.examples.tickets:SupportTicket",
            prompt="Subject: {subject}\\n\\n{body}",
        ),
        chat_model="nightly-chat-model",
        run=RunOptions(via="batch", batch_api={"poll_interval_s": 60}),
    )
    print(summary["cost_usd"], summary["online_cost_usd"])
    ```
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from prefect import task
from prefect.artifacts import update_progress_artifact
from prefect.cache_policies import NO_CACHE

from prefect_openai_chat._sync import run_sync
from prefect_openai_chat.blocks import ChatModel
from prefect_openai_chat.blocks.assembly import RUNNERS, resolve_chat_model
from prefect_openai_chat.chat import ChatRunner
from prefect_openai_chat.errors import ChatError, InvalidInputError
from prefect_openai_chat.extraction.batch_api import BatchApiOptions, BatchNight
from prefect_openai_chat.extraction.batch_api.claims import ShardClaims, lease_for
from prefect_openai_chat.extraction.batch_api.cleanup import delete_files
from prefect_openai_chat.extraction.batch_api.client import BatchClient
from prefect_openai_chat.extraction.batch_api.ledger import BatchLedger, run_key
from prefect_openai_chat.extraction.batch_api.night import ELSEWHERE, Planned, Work
from prefect_openai_chat.extraction.batch_api.store import PAGE, NightStore, pack, unpack
from prefect_openai_chat.extraction.ledger import Ledger
from prefect_openai_chat.extraction.outcomes import (
    cached_outcome,
    failed_outcome,
    unexpected_reason,
)
from prefect_openai_chat.flows.checks import batch_api_folder
from prefect_openai_chat.flows.shards import current_lines
from prefect_openai_chat.flows.source_lines import SourceItem
from prefect_openai_chat.flows.summary import RunArtifacts
from prefect_openai_chat.flows.window import RecordWindow, RunJob
from prefect_openai_chat.redaction import redact_exception, redact_text
from prefect_openai_chat.results import RecordOutcome
from prefect_openai_chat.tasks import (
    assemble,
    extraction_key,
    gate_for,
    record_ledger,
    run_logger,
    runner_call,
)


@contextlib.contextmanager
def _redacted() -> Iterator[None]:
    """Redact (in place) whatever error leaves the block: the batch path's boundary."""
    try:
        yield
    except Exception as exc:
        redact_exception(exc)
        raise


def run_batch_api(
    job: RunJob, window: RecordWindow, items: Iterator[SourceItem], artifacts: RunArtifacts
) -> None:
    """Extract every readable record of `items` through the Batch API; write them out."""
    with _redacted():
        _run_batch_api(job, window, items, artifacts)


def _run_batch_api(
    job: RunJob, window: RecordWindow, items: Iterator[SourceItem], artifacts: RunArtifacts
) -> None:
    model = run_sync(resolve_chat_model(job.chat_model))
    options = job.run.batch_api_options
    store = NightStore()
    cache = record_ledger(job.run.cache)
    try:
        _read_source(job, model, window, items, store)
        _look_up(store, cache)
        key = run_key(model.model, _scope(model), _keys(store))
        ledger = _batch_ledger(job.run.cache, cache, key)
        claims = _shard_claims(cache, key, options)
        if claims is not None:
            claims.claim_new(store)
        night = None
        if store.count("status IN ('new', 'elsewhere')"):
            night = _night(job, model, options, ledger, store, cache)
        if night is not None and store.count("status = 'queued'"):
            _run_rounds(job, options, night, artifacts, claims)
        if claims is not None and night is not None:
            claims.release_ended(store)  # others may take over what ended without an answer
            if store.count(ELSEWHERE):
                await_other_shards(job, night, claims)
        _write_out(window, store)
        ledger.remove()
        batches = ledger.all_batches()
        if batches and not options.keep_files:
            _delete_files(job.chat_model, batches)
    finally:
        if cache is not None:
            cache.close()
        store.close()


def _read_source(
    job: RunJob, model: ChatModel, window: RecordWindow, items: Iterator[SourceItem],
    store: NightStore,
) -> None:  # fmt: skip
    """Every readable record into the night's store, a page at a time: its item, its cache
    key (or why it was skipped); one work per distinct key."""
    position = 0
    while page := list(itertools.islice(items, PAGE)):
        records: list[tuple[int, bytes, str | None, str | None, None]] = []
        works: list[tuple[str, bytes, int]] = []
        for item in window.readable(page):
            blob = pack(item)  # a readable item's record is JSON data: it always pickles
            try:
                text = job.spec.render(item.record or {})
                key = extraction_key(model, job.spec, text)
            except InvalidInputError as exc:
                records.append((position, blob, None, str(exc), None))
            except ChatError:
                raise  # the plugin's own run-level refusal, as on the online path
            except Exception as exc:  # this record's own fault: its outcome, not the night's
                reason = unexpected_reason(exc, "not sent")
                records.append((position, blob, None, reason, None))
            else:
                records.append((position, blob, key, None, None))
                works.append((key, pack(Work(key, text, status="new")), position))
            position += 1
        store.add_records(records)
        store.add_works(works)


def _keys(store: NightStore) -> Iterator[str]:
    """Every custom id of the night, sorted, a page at a time."""
    for page in store.id_pages():
        yield from page


def _look_up(store: NightStore, cache: Ledger | None) -> None:
    """Mark the works the record ledger has finished (an earlier run paid for them)."""
    if cache is None:
        return
    for page in store.id_pages():
        store.set_cached(cache.get_many(page))


def _batch_ledger(setting: bool | str, cache: Ledger | None, key: str) -> BatchLedger:
    """The run's batches: in the record ledger, so any host resumes them; in this host's
    `batch-runs` folder without one (`cache=False`)."""
    folder = batch_api_folder(setting)
    if cache is None:
        return BatchLedger.open(folder, key)
    return BatchLedger.open_in(cache, key, legacy=folder)


def _scope(model: ChatModel) -> str:
    """What names a run beside its model and requests: the endpoint, and a shard's lines
    (two shards never share a run, even with the same requests)."""
    lines = current_lines()
    return model.endpoint if lines is None else f"{model.endpoint} lines {lines[0]}-{lines[1]}"


def _shard_claims(cache: Ledger | None, key: str, options: BatchApiOptions) -> ShardClaims | None:
    """A shard's claims on its requests, named by its run (None outside a shard)."""
    if current_lines() is None or cache is None:
        return None
    return ShardClaims(cache, f"batch-shard:{key}", lease_for(options))


def _night(
    job: RunJob, model: ChatModel, options: BatchApiOptions, ledger: BatchLedger,
    store: NightStore, cache: Ledger | None,
) -> BatchNight:  # fmt: skip
    """The night over `store`, its first requests built; each final outcome stored in the
    record ledger as it is settled."""
    night = run_sync(_prepare(job, model, options, ledger, store))
    if cache is not None:
        night.on_final = cache.complete
    return night


def _run_rounds(
    job: RunJob,
    options: BatchApiOptions,
    night: BatchNight,
    artifacts: RunArtifacts,
    claims: ShardClaims | None,
) -> None:
    logger = run_logger()
    renew = False  # a shard's claims were made just now; renewed before each later wave
    for round_number in range(options.max_rounds):
        waves = night.plan(round_number)
        if not waves and round_number > 0:
            break
        for number, wave in enumerate(waves, start=1):
            if claims is not None and renew:
                claims.renew_open(night.store)
            renew = True
            label = f"round {round_number + 1}, wave {number}/{len(waves)}"
            ids = submit_batches(job.chat_model, night, round_number, wave, label)
            logger.info("batch API %s: %d batch(es) %s", label, len(ids), ", ".join(ids))
            batches = wait_for_batches(job.chat_model, night, ids, artifacts.progress_id, label)
            collect_batches(job.chat_model, night, batches, wave)
        settle_records(job, night, round_number)
        if night.open_works == 0:
            break
    night.give_up(f"no outcome after {options.max_rounds} batch rounds")


async def _prepare(
    job: RunJob,
    model: ChatModel,
    options: BatchApiOptions,
    ledger: BatchLedger,
    store: NightStore,
) -> BatchNight:
    _, runner = await assemble(model)
    night = BatchNight(
        job.spec.schema_class,
        runner.settings.model,
        options,
        ledger,
        job.spec.options(
            runner.settings.model, runner.settings.defaults.get("max_completion_tokens")
        ),
        prices=runner.settings.prices,
        store=store,
    )
    await night.prepare(runner)
    return night


def _client(model: ChatModel) -> BatchClient:
    """The Batch API calls over the model's client, under the model's retry policy, circuit
    and retry budget."""
    return RUNNERS.batch_client(model)


async def _asubmit(
    chat_model: ChatModel | str, night: BatchNight, round_number: int, wave: Sequence[Planned],
    label: str,
) -> list[str]:  # fmt: skip
    """Create the wave's batches (or find those a crashed run made), recorded before any wait."""
    with _redacted():
        model = await resolve_chat_model(chat_model)
        client = _client(model)
        return [await night.submit(client, round_number, planned) for planned in wave]


async def _await_batches(
    chat_model: ChatModel | str, night: BatchNight, batch_ids: list[str], progress_id: Any,
    label: str,
) -> list[Any]:  # fmt: skip
    """Poll the batches until they end, showing their request counts as the run's progress."""
    with _redacted():
        model = await resolve_chat_model(chat_model)
    shown = ""  # the last text shown (only a change is shown again)

    def show(batches: Sequence[Any]) -> None:
        nonlocal shown
        total = done = failed = 0
        parts = []
        for batch in batches:
            counts = batch.request_counts
            if counts is not None:
                total, done, failed = (
                    total + counts.total,
                    done + counts.completed,
                    failed + counts.failed,
                )
            parts.append(f"{batch.id} {batch.status}")
        text = (
            f"Batch API {label}: {done} of {total} requests completed, {failed} failed"
            f" ({'; '.join(parts)})"
        )
        if text != shown:
            shown = text
            run_logger().info("%s", text)
            if progress_id is not None:
                share = 100.0 * (done + failed) / total if total else 0.0
                update_progress_artifact(progress_id, min(share, 100.0), description=text)

    with _redacted():
        return await night.wait(_client(model), batch_ids, show)


async def _acollect(
    chat_model: ChatModel | str, night: BatchNight, batches: list[Any], wave: Sequence[Planned]
) -> None:
    """Download the output and error files and match their lines by custom_id."""
    with _redacted():
        model = await resolve_chat_model(chat_model)
        client = _client(model)
        for batch, planned in zip(batches, wave, strict=True):
            notes = await night.collect(client, batch, planned)
            if batch.id in night.abandoned:
                run_logger().warning("%s", night.abandoned[batch.id])
            for note in notes[:20]:
                run_logger().warning("%s", note)
            if len(notes) > 20:
                run_logger().warning("batch %s: %d more such notes", batch.id, len(notes) - 20)
            if batch.status == "failed":
                _log_validation_errors(batch)


def _log_validation_errors(batch: Any) -> None:
    errors = getattr(batch.errors, "data", None) or []
    for error in errors[:20]:
        text = f"line {error.line}: {error.code}: {error.message}"
        run_logger().warning("batch %s failed validation: %s", batch.id, redact_text(text))


async def _online_runner(job: RunJob) -> ChatRunner:
    """The model's runner for the night's online calls, under the run's concurrency."""
    _, runner = await assemble(job.chat_model)
    runner.protection.gate = gate_for(job.concurrency_pool, job.run.concurrency)
    return runner


async def _asettle(job: RunJob, night: BatchNight, round_number: int) -> None:
    """Finish what the answers settle; send re-asks online (or queue them); cache outcomes
    (`night.on_final`, as each is settled)."""
    with _redacted():
        runner = await _online_runner(job)
        slots = job.run.concurrency * 4
        await night.settle(round_number, runner, runner_call(runner), slots=slots)


_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE}


@task(name="batch-api-submit", task_run_name="submit batches, {label}", **_OPTIONS)
def submit_batches(
    chat_model: ChatModel | str, night: BatchNight, round_number: int, wave: list[Planned],
    label: str,
) -> list[str]:  # fmt: skip
    """Create a wave's batches; their ids are in the ledger before this returns."""
    return run_sync(_asubmit(chat_model, night, round_number, wave, label))


@task(name="batch-api-wait", task_run_name="wait for batches, {label}", **_OPTIONS)
def wait_for_batches(
    chat_model: ChatModel | str, night: BatchNight, batch_ids: list[str], progress_id: Any,
    label: str,
) -> list[Any]:  # fmt: skip
    """Poll a wave's batches every `poll_interval_s` until each has ended."""
    return run_sync(_await_batches(chat_model, night, batch_ids, progress_id, label))


def _collect_run_name() -> str:
    """`collect answers, 2 batches, 150 records` (issue 24: not `batch-api-collect-523`)."""
    from prefect.runtime import task_run

    try:
        parameters = task_run.parameters
        batches, wave = parameters.get("batches") or [], parameters.get("wave") or []
        records = sum(planned.count for planned in wave)
    except (AttributeError, TypeError):  # a name is never worth failing the task for
        return "collect answers"
    return f"collect answers, {len(batches)} batches, {records} records"


@task(name="batch-api-collect", task_run_name=_collect_run_name, **_OPTIONS)
def collect_batches(
    chat_model: ChatModel | str, night: BatchNight, batches: list[Any], wave: list[Planned]
) -> None:
    """Download a wave's output and error files; match the lines to their records."""
    run_sync(_acollect(chat_model, night, batches, wave))


def _settle_run_name() -> str:
    """`settle answers, round 1`: rounds counted from 1, as the night's log lines count them."""
    from prefect.runtime import task_run

    round_number = task_run.parameters.get("round_number")
    return "settle answers" if round_number is None else f"settle answers, round {round_number + 1}"


@task(name="batch-api-settle", task_run_name=_settle_run_name, **_OPTIONS)
def settle_records(job: RunJob, night: BatchNight, round_number: int) -> None:
    """Validate the round's answers; re-ask online (or queue for the next round); cache."""
    run_sync(_asettle(job, night, round_number))


@task(
    name="batch-api-await-shards", task_run_name="wait for requests other shards hold", **_OPTIONS
)
def await_other_shards(job: RunJob, night: BatchNight, claims: ShardClaims) -> None:
    """Wait for the outcomes of this shard's requests that other shards hold (`claims.py`);
    send online those a shard gives up."""
    run_sync(_await_others(job, night, claims))


async def _await_others(job: RunJob, night: BatchNight, claims: ShardClaims) -> None:
    logger = run_logger()
    logger.info(
        "batch API: %d request(s) of this shard are held by another shard; waiting for their"
        " outcomes in the record ledger",
        night.store.count(ELSEWHERE),
    )
    with _redacted():
        online = runner_call(await _online_runner(job))
        await claims.await_others(night, online, job.run.concurrency * 4, logger.warning)


@task(name="batch-api-delete-files", task_run_name="delete the night's files", **_OPTIONS)
def delete_batch_files(chat_model: ChatModel | str, batches: list[dict[str, Any]]) -> int:
    """Delete the night's input and result files from the account's storage; how many."""
    return run_sync(_adelete(chat_model, batches))


async def _adelete(chat_model: ChatModel | str, batches: list[dict[str, Any]]) -> int:
    with _redacted():
        model = await resolve_chat_model(chat_model)
        deleted, notes = await delete_files(_client(model), batches)
    logger = run_logger()
    for note in notes[:20]:
        logger.warning("batch API: a file could not be deleted: %s", note)
    logger.info(
        "batch API: deleted %d file(s) of %d batch(es) from the account's storage",
        deleted,
        len(batches),
    )
    return deleted


def _delete_files(chat_model: ChatModel | str, batches: list[dict[str, Any]]) -> None:
    """`delete_batch_files`, whose failure (every record has ended) is a warning."""
    state = delete_batch_files(chat_model, batches, return_state=True)
    if state.is_failed():
        run_logger().warning(
            "batch API: the night's files were not deleted (%s); they stay in the account's"
            " storage",
            state.message,
        )


def _write_out(window: RecordWindow, store: NightStore) -> None:
    """Write every record's outcome through the window, in input order, a page at a time;
    a repeated request is answered once and paid once (its later records count as cached)."""
    after = -1
    while page := store.records_page(after):
        items: list[SourceItem] = []
        outcomes: list[RecordOutcome] = []
        for position, blob, key, skipped, work_blob, cached, first in page:
            item: SourceItem = unpack(blob)
            items.append(item)
            if key is None:
                outcomes.append(failed_outcome(item.line, item.key, "skipped", skipped))
            elif cached is not None:
                outcomes.append(cached_outcome(cached, item.line, item.key))
            else:
                work: Work = unpack(work_blob)
                outcome = work.result().model_copy(update={"index": item.line, "key": item.key})
                if position != first:  # the same request again: answered once, paid once
                    outcome = outcome.model_copy(update={"cached": True})
                outcomes.append(outcome)
        window.write(items, outcomes)
        after = page[-1][0]
