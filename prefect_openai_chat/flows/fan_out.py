"""Fan one `extract_records` run out over several workers: one child run per shard.

`extract_records(..., run=RunOptions(shards=4, shard_deployment="extract-records-shard/shard"))` splits
the source into line ranges before any call, starts one flow run of the deployment
per shard on its work pool (`run_deployment`), waits for them, and writes the final
output and quarantine from the shards' parts (`shards.merge_parts`). Without
`shard_deployment`, the shards run as tasks on the flow's task runner: threads by
default, processes or hosts with `DaskTaskRunner`.

A shard that fails is run again by Prefect: the shard flow has flow-run `retries`,
and a shard whose process died (no heartbeat) or that ended Failed or Crashed is
rescheduled (`AwaitingRetry`, the state the UI's Retry button sets), so a worker of
the pool picks the same flow run up again. It resumes from the record cache: every
record it finished before is read back, not paid again.

What a sharded run refuses before any call is in `flows/shard_checks.py`; starting,
watching and rescheduling a deployment's shard runs in `flows/shard_watch.py`. This
module keeps the shard flow (its deployments' entrypoint is
`prefect_openai_chat/flows/fan_out.py:extract_records_shard`) and re-exports their names.

Example:
    >>> from prefect_openai_chat.flows.fan_out import is_local_path
    >>> is_local_path("s3://bucket/rows.jsonl")
    False
"""  # noqa: E501

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from prefect import task
from prefect.context import FlowRunContext

from prefect_openai_chat.blocks import ChatModel
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction.spec import ExtractionSpec
from prefect_openai_chat.flows.checks import preflight
from prefect_openai_chat.flows.options import RunOptions
from prefect_openai_chat.flows.records import run_records
from prefect_openai_chat.flows.shard_checks import (
    check_across_hosts,
    check_options_for_deployment,
    is_local_path,
)
from prefect_openai_chat.flows.shard_watch import (
    DEFAULT_HEARTBEAT_S,
    HEARTBEAT_ENV,
    PENDING_GRACE_S,
    POLL_S,
    PROGRESS_LOG_S,
    RESCHEDULES,
    STALE_BEATS,
    ShardWatch,
    beating,
    heartbeat_s,
    run_on_deployment,
)
from prefect_openai_chat.flows.shards import (
    PartTarget,
    Shard,
    ShardParts,
    census,
    merge_parts,
    parts_folder,
    plan_shards,
    shard_lines,
    stale_parts,
    write_summary,
)
from prefect_openai_chat.flows.sinks import hold_outputs
from prefect_openai_chat.flows.source_flow import source_flow
from prefect_openai_chat.flows.sources import check_source
from prefect_openai_chat.flows.summary import RunArtifacts, summary_line
from prefect_openai_chat.storage import Location, is_url, locate, plain_options
from prefect_openai_chat.tasks import run_logger

__all__ = [
    "DEFAULT_HEARTBEAT_S",
    "HEARTBEAT_ENV",
    "PENDING_GRACE_S",
    "POLL_S",
    "PROGRESS_LOG_S",
    "RESCHEDULES",
    "STALE_BEATS",
    "ShardWatch",
    "beating",
    "chat_model_reference",
    "check_across_hosts",
    "check_options_for_deployment",
    "extract_records_shard",
    "fan_out",
    "heartbeat_s",
    "is_local_path",
    "run_on_deployment",
    "run_on_task_runner",
    "run_shard_task",
    "spec_for_shards",
]


@source_flow(name="extract-records-shard", retries=2, retry_delay_seconds=2, log_prints=True)
def extract_records_shard(
    source: str,
    output: str,
    quarantine: str,
    first_line: int,
    last_line: int,
    summary: str,
    spec: ExtractionSpec,
    chat_model: ChatModel | str,
    run: RunOptions | None = None,
    heartbeat: str | None = None,
) -> dict[str, Any]:
    """`extract_records` over lines `first_line..last_line` of `source`, into part files.

    `output` and `quarantine` are this shard's parts (JSONL, local files or objects);
    `summary` receives its totals once both parts are in place; `heartbeat` is touched
    while it runs. URLs are opened with the run's `storage_options` (masked in the run's
    parameters).
    """
    run = run or RunOptions()
    options = plain_options(run.storage_options)

    def part(where: str) -> PartTarget:
        return locate(where, options) if is_url(where) else Path(where)

    with beating(part(heartbeat) if heartbeat else None, heartbeat_s()):
        with shard_lines(first_line, last_line):
            result = run_records(source, output, quarantine, spec, chat_model, run)
        write_summary(part(summary), result)
    return result


@task(name="extract-records-shard", retries=2, retry_delay_seconds=1)
def run_shard_task(parameters: dict[str, Any], label: str) -> dict[str, Any]:
    """One shard as a task (on a Dask worker, say): the shard flow, as a subflow there."""
    # Imported here, not taken from this module's globals: a task runner such as Dask
    # pickles this function by value, and the flow must resolve its annotations from the
    # real module in the worker.
    from prefect_openai_chat.flows.fan_out import extract_records_shard

    shard_flow = extract_records_shard.with_options(flow_run_name=label)
    result: dict[str, Any] = shard_flow(**parameters)
    return result


def spec_for_shards(spec: ExtractionSpec, for_deployment: bool) -> ExtractionSpec:
    """What to send a shard as `spec`: its schema as the import path a worker resolves
    (required for a deployment, whose parameters are JSON); a task runner may take the
    class itself when it has none."""
    try:
        return spec.portable()
    except InvalidInputError:
        if for_deployment:
            raise
        return spec


def chat_model_reference(chat_model: ChatModel | str, for_deployment: bool) -> ChatModel | str:
    """What to send a shard as `chat_model`: a saved block's name for a deployment."""
    if isinstance(chat_model, str) or not for_deployment:
        return chat_model
    name = getattr(chat_model, "_block_document_name", None)
    if name and not getattr(chat_model, "_is_anonymous", False):
        return str(name)
    raise InvalidInputError(
        "a shard deployment needs a saved ChatModel: save the block"
        " (chat_model.save('nightly-chat-model')) and pass its name"
    )


def fan_out(
    source: Any,
    output: str,
    quarantine: str,
    spec: ExtractionSpec,
    chat_model: ChatModel | str,
    run: RunOptions,
) -> dict[str, Any]:
    """The sharded runner: the body of `extract_records` when `run.sharded`.

    The same pre-flight as an unsharded run (`checks.preflight`, with the part folder
    among the paths), after the refusal of what workers of other hosts cannot see
    (`check_across_hosts`), then the run holds its output and quarantine (`hold_outputs`) while its
    shards run and until their parts are merged: a second run on them is refused.
    """
    started = time.perf_counter()
    check_source(source, plain_options(run.storage_options))
    if not isinstance(source, str | Path):
        raise InvalidInputError(
            "shards need a .jsonl or .csv file as source, every shard reads its own lines;"
            " write the records to a .jsonl file first"
        )
    check_across_hosts(
        run.shard_deployment,
        run.cache,
        {"source": source, "output": output, "quarantine": quarantine},
        run.allow_local_paths,
    )
    shard_storage = check_options_for_deployment(run.shard_deployment, run.storage_options)
    run = run.model_copy(update={"storage_options": shard_storage})
    context = FlowRunContext.get()
    run_id = str(context.flow_run.id) if context and context.flow_run else uuid.uuid4().hex
    folders: dict[str, Path] = {}
    if not is_url(output):  # a local part folder: no file of the run may lie inside it
        folders["the sharded run's part folder"] = parts_folder(Path(output), run_id)
    checked = preflight(source, output, quarantine, spec, run, folders=folders)
    with hold_outputs(checked.output, checked.quarantine):
        if isinstance(checked.output, Location):
            for line in stale_parts(checked.output, run_id):
                run_logger().warning("%s", line)
        assert isinstance(checked.source, str | Path | Location)  # checked above: a file
        return _run_shards(
            checked.source, checked.output, checked.quarantine, spec, chat_model, run,
            started=started, run_id=run_id,
        )  # fmt: skip


def _run_shards(
    source: str | Path | Location,
    out_path: PartTarget,
    quarantine_path: PartTarget,
    spec: ExtractionSpec,
    chat_model: ChatModel | str,
    run: RunOptions,
    *,
    started: float,
    run_id: str,
) -> dict[str, Any]:
    """Split, run the shards, merge their parts (the outputs held by the caller)."""
    plan = plan_shards(source, run.shards)
    expected = census(source, plan, spec.key_field)
    folder = parts_folder(out_path, run_id)
    if isinstance(folder, Path):
        folder.mkdir(parents=True, exist_ok=True)
    parts = [ShardParts.in_folder(folder, shard) for shard in plan]
    deployed = run.shard_deployment is not None
    shard_run = run.for_shard()
    if isinstance(shard_run.cache, str) and "://" not in shard_run.cache:
        shard_run = shard_run.model_copy(update={"cache": str(Path(shard_run.cache).absolute())})
    shard_spec = spec_for_shards(spec, deployed)
    common: dict[str, Any] = {
        "source": _where(source),
        "spec": shard_spec.model_dump(mode="json") if deployed else shard_spec,
        "chat_model": chat_model_reference(chat_model, deployed),
        "run": shard_run.model_dump(mode="json", exclude_defaults=True) if deployed else shard_run,
    }
    each = [
        {
            **common,
            "output": _where(part.output),
            "quarantine": _where(part.quarantine),
            "summary": _where(part.summary),
            "heartbeat": _where(part.heartbeat),
            "first_line": shard.first_line,
            "last_line": shard.last_line,
        }
        for shard, part in zip(plan, parts, strict=True)
    ]
    artifacts = RunArtifacts()
    total = sum(expected.per_shard)
    done: list[int] = []

    def finished(number: int) -> None:
        done.append(number)
        artifacts.progress(sum(expected.per_shard[n - 1] for n in done), total)

    logger = run_logger()
    logger.info(
        "extract-records: %d records in %d shards (%s) via %s",
        total,
        len(plan),
        ", ".join(f"lines {s.first_line}-{s.last_line}" for s in plan),
        run.shard_deployment or "the flow's task runner",
    )
    if run.shard_deployment is not None:
        run_ids = run_on_deployment(run.shard_deployment, plan, each, parts, run_id, finished)
    else:
        run_on_task_runner(plan, each, finished)
        run_ids = {}
    totals, summaries = merge_parts(
        plan, parts, expected, out_path, quarantine_path, spec.schema_class
    )
    p50 = [s["p50_latency_s"] for s in summaries if s.get("p50_latency_s") is not None]
    p95 = [s["p95_latency_s"] for s in summaries if s.get("p95_latency_s") is not None]
    wall = round(time.perf_counter() - started, 3)
    extra = {
        "wall_time_s": wall,
        "p50_latency_s": max(p50) if p50 else None,  # the slowest shard's
        "p95_latency_s": max(p95) if p95 else None,
        "concurrency": f"{run.concurrency} per shard",
        "shards": len(plan),
        "shard_runs": ", ".join(str(run_ids[n]) for n in sorted(run_ids)) or "tasks",
        "output": str(out_path),
        "quarantine": str(quarantine_path),
    }
    artifacts.finish(totals, extra)
    summary = {**totals.as_dict(), **extra}
    logger.info("%s", summary_line(summary, shards=len(plan)))
    return summary


def _where(target: str | Path | Location) -> str:
    """A file as a shard is told it: an object's URL, a local file's absolute path."""
    return target.url if isinstance(target, Location) else str(Path(target).absolute())


def run_on_task_runner(plan: list[Shard], each: list[dict[str, Any]], finished: Any) -> None:
    """Run the shards as tasks on the current flow's task runner and wait for all of them."""
    futures = [
        run_shard_task.with_options(task_run_name=f"extract-records {shard.label}").submit(
            parameters, shard.label
        )
        for shard, parameters in zip(plan, each, strict=True)
    ]
    for shard, future in zip(plan, futures, strict=True):
        future.result()
        finished(shard.number)
