"""One unsharded run: its checked inputs through the online or the Batch API runner.

`run_records` is the body of `extract_records` without shards, and of each shard of a
sharded run (`fan_out.extract_records_shard`): the pre-flight (`checks.preflight`),
then the records read once, each written once through the `RecordWindow`, then the
totals, artifacts and the summary.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prefect_openai_chat.blocks import ChatModel
from prefect_openai_chat.extraction.spec import ExtractionSpec
from prefect_openai_chat.flows.batch_api import run_batch_api
from prefect_openai_chat.flows.checks import preflight
from prefect_openai_chat.flows.heap import frozen_heap
from prefect_openai_chat.flows.online import OnlineRunner
from prefect_openai_chat.flows.options import RunOptions
from prefect_openai_chat.flows.shards import count_in_shard, in_shard
from prefect_openai_chat.flows.sinks import open_outputs
from prefect_openai_chat.flows.sources import Keys, count_records, read_records
from prefect_openai_chat.flows.summary import RunArtifacts, RunTotals, summary_line
from prefect_openai_chat.flows.window import RecordWindow, RunJob
from prefect_openai_chat.resilience import AdaptiveConcurrency
from prefect_openai_chat.tasks import events, run_logger, share_concurrency, shared_loop
from prefect_openai_chat.telemetry import observe_run


def run_records(
    source: str | Path | Iterable[Any],
    output: str,
    quarantine: str,
    spec: ExtractionSpec,
    chat_model: ChatModel | str,
    run: RunOptions,
) -> dict[str, Any]:
    """Extract `spec` from every record of `source` into `output`, the rest into `quarantine`
    (unsharded; in a shard, over the shard's lines only)."""
    started = time.perf_counter()
    checked = preflight(source, output, quarantine, spec, run)
    gate = AdaptiveConcurrency(run.concurrency, name="extract-records")
    pool = share_concurrency(f"extract-records-{uuid.uuid4().hex}", gate)
    job = RunJob(chat_model, spec, run, pool)
    keys = Keys(spec.key_field)
    total = count_in_shard(checked.source, count_records(checked.source))
    totals, artifacts, trips = RunTotals(), RunArtifacts(), events.count_trips()
    schema = spec.schema_class
    with (
        frozen_heap(),  # full garbage collections skip the heap the night started with
        observe_run("extract_records", via=run.via) as span,
        open_outputs(checked.output, checked.quarantine, schema) as (rows, bad),
    ):
        window = RecordWindow(
            rows,
            bad,
            totals,
            lambda: artifacts.progress(totals.records, total),
            keep_rows=run.return_rows,
        )
        items = in_shard(read_records(checked.source, keys))  # a shard's lines only, in a shard
        if run.via == "batch":
            run_batch_api(job, window, items, artifacts)
        else:
            with shared_loop(pool):  # every chunk of the run on one event loop
                OnlineRunner(job, window).run(items, total)
        window.check_exactly_once()
        span.totals(totals.as_dict())
    totals.circuit_trips = trips.stop()
    totals.count_keys(keys)
    extra = {
        "wall_time_s": round(time.perf_counter() - started, 3),
        "concurrency": f"{gate.limit} of {run.concurrency} (lowest {gate.lowest})",
        "output": str(checked.output),
        "quarantine": str(checked.quarantine),
    }
    artifacts.finish(totals, extra)
    summary = _summary(totals, extra)
    if window.kept is not None:
        summary["rows"] = window.kept  # after the artifact: the UI shows totals, not rows
    return summary


def _summary(totals: RunTotals, extra: dict[str, Any]) -> dict[str, Any]:
    """The run's totals and facts, logged in one line."""
    summary = {**totals.as_dict(), **extra}
    run_logger().info("%s", summary_line(summary))
    return summary
