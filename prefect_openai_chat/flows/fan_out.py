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

Example:
    >>> from prefect_openai_chat.flows.fan_out import is_local_path
    >>> is_local_path("s3://bucket/rows.jsonl")
    False
"""  # noqa: E501

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import task
from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext

from prefect_openai_chat.blocks import ChatModel
from prefect_openai_chat.blocks.storage_options import saved_name, slug_of
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction.ledger import ledger_kind, ledger_role
from prefect_openai_chat.extraction.spec import ExtractionSpec
from prefect_openai_chat.flows.checks import preflight
from prefect_openai_chat.flows.options import RunOptions
from prefect_openai_chat.flows.records import run_records
from prefect_openai_chat.flows.shards import (
    PartTarget,
    Shard,
    ShardParts,
    beat,
    beat_mark,
    census,
    merge_parts,
    parts_folder,
    plan_shards,
    shard_lines,
    stale_parts,
    write_summary,
)
from prefect_openai_chat.flows.sinks import hold_outputs
from prefect_openai_chat.flows.sources import check_source, source_flow
from prefect_openai_chat.flows.summary import RunArtifacts, summary_line
from prefect_openai_chat.redaction import MASK
from prefect_openai_chat.storage import Location, is_url, locate, masked_options, plain_options
from prefect_openai_chat.tasks import ledger_path, run_logger

HEARTBEAT_ENV = "PREFECT_OPENAI_CHAT_SHARD_HEARTBEAT_S"
DEFAULT_HEARTBEAT_S = 10.0
STALE_BEATS = 5  # a running shard without a heartbeat for this many beats is taken as dead
PENDING_GRACE_S = 120.0  # a claimed (Pending) run may take this long to start its process
RESCHEDULES = 2  # how often the parent re-runs one shard before it gives up
POLL_S = 1.0
PROGRESS_LOG_S = 10.0  # how often a parent waiting for its shards says so


def heartbeat_s() -> float:
    """Seconds between a shard's heartbeats (`PREFECT_OPENAI_CHAT_SHARD_HEARTBEAT_S`, 10)."""
    raw = os.environ.get(HEARTBEAT_ENV)
    try:
        value = float(raw) if raw else DEFAULT_HEARTBEAT_S
    except ValueError as exc:
        raise InvalidInputError(f"{HEARTBEAT_ENV}={raw!r} is not a number of seconds") from exc
    return max(value, 0.1)


@contextmanager
def beating(path: PartTarget | None, every_s: float) -> Iterator[None]:
    """Touch `path` (write the object anew) every `every_s` seconds from a thread while the
    block runs; a store that refuses one beat is tried again at the next."""
    if path is None:
        yield
        return
    stop = threading.Event()

    def beats() -> None:
        while True:
            if isinstance(path, Location):
                with suppress(Exception):  # a missed beat is one beat; five make a death
                    beat(path)
            else:
                beat(path)
            if stop.wait(every_s):
                return

    thread = threading.Thread(target=beats, name="shard-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


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


def check_options_for_deployment(deployment: str | None, storage_options: Any) -> Any:
    """What each shard gets as `storage_options`; refuses credentials a deployment's shards
    cannot get safely.

    A deployment's parameters are stored by the Prefect server in the clear (a `SecretDict`
    would arrive masked): so a saved credentials block is sent as its name
    ("aws-credentials/etl"), which each worker loads from the Prefect API, and inline
    secrets are refused.
    """
    if deployment is None or storage_options is None or isinstance(storage_options, str):
        return storage_options
    name = saved_name(storage_options)
    if name is not None:
        return name
    if slug_of(storage_options) is not None:
        raise InvalidInputError(
            f"shard_deployment={deployment!r} with an unsaved {slug_of(storage_options)} block"
            " as storage_options: the workers load a block by its name. Save it"
            " (block.save('etl-storage')) and pass it, or its name"
            f" '{slug_of(storage_options)}/etl-storage'"
        )
    if hasattr(storage_options, "get_secret_value") or _masks(masked_options(storage_options)):
        raise InvalidInputError(
            f"shard_deployment={deployment!r} with credentials in storage_options: a"
            " deployment's parameters are stored by the Prefect server in the clear (and a"
            " SecretDict arrives masked), so each shard would not get them safely. Save them"
            " in a credentials block (prefect-aws AwsCredentials, prefect-gcp GcpCredentials,"
            " prefect-azure AzureBlobStorageCredentials) and pass its name,"
            " storage_options='aws-credentials/etl': each worker loads it from the Prefect"
            " API; or give the workers their credentials through their environment"
            " (AWS_ACCESS_KEY_ID, an instance or service-account role, the work pool's job"
            " variables) and pass in storage_options only what is not secret"
            " (client_kwargs.endpoint_url, ...)"
        )
    return storage_options


def _masks(shown: Any) -> bool:
    """Whether options as shown (`masked_options`) hide a value."""
    if isinstance(shown, dict):
        return any(_masks(value) for value in shown.values())
    return bool(shown == MASK)


def is_local_path(value: Any) -> bool:
    """True for a path of this host's file system (a URL of another scheme is not).

    Example:
        >>> is_local_path("out/rows.jsonl"), is_local_path("s3://bucket/rows.jsonl")
        (True, False)

    `memory://` counts as local: each process has its own.
    """
    text = str(value)
    return "://" not in text or text.lower().startswith(("file://", "memory://"))


def check_across_hosts(
    deployment: str | None, cache: Any, paths: dict[str, Any], allow_local_paths: bool
) -> None:
    """Refuse, before any call, a deployment's shards with what other hosts cannot see.

    The flow runs of `deployment` run on the workers of its pool, maybe on other hosts
    (containers, machines) that share no disk with this one: they would not see a SQLite
    ledger (each would pay for every record again) nor local files. `allow_local_paths`
    says every worker runs on this host, or sees the paths through a shared mount.
    """
    if deployment is None or allow_local_paths:
        return
    seen: list[str] = []
    if ledger_kind(cache) == "sqlite":
        where = ledger_path(cache)
        seen.append(
            f"{ledger_role(cache)} is the SQLite file {str(where)!r}: use a shared ledger,"
            " cache='postgresql://user@host/db' (or PREFECT_OPENAI_CHAT_CACHE on every"
            " worker)"
        )
    local = [f"{role} {str(value)!r}" for role, value in paths.items() if is_local_path(value)]
    if local:
        seen.append(
            f"{', '.join(local)} {'is a local path' if len(local) == 1 else 'are local paths'}:"
            " use locations every worker reaches (object-storage URLs: s3://, gs://, az://;"
            " the shards' parts then live under the output's URL too)"
        )
    if seen:
        raise InvalidInputError(
            f"shard_deployment={deployment!r} runs the shards as flow runs of a work pool,"
            " whose workers may run on other hosts that do not see this host's files: "
            + "; ".join(seen)
            + ". If every worker of the pool runs on this host (a SQLite ledger needs that),"
            " or sees these paths under the same names through a shared mount (with a"
            " postgresql:// ledger), pass allow_local_paths=True"
        )


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


def run_on_deployment(
    deployment: str,
    plan: list[Shard],
    each: list[dict[str, Any]],
    parts: list[ShardParts],
    parent_id: str,
    finished: Any,
) -> dict[int, UUID]:
    """Start one flow run of `deployment` per shard, wait for all, re-run the ones that died."""
    from prefect.deployments import run_deployment

    runs: dict[int, UUID] = {}
    for shard, parameters in zip(plan, each, strict=True):
        flow_run: FlowRun = run_deployment(  # type: ignore[assignment]
            deployment,
            parameters=parameters,
            timeout=0,
            flow_run_name=f"extract-records {shard.label}",
            idempotency_key=f"{parent_id}-shard-{shard.number}-of-{shard.of}",
        )
        runs[shard.number] = flow_run.id
    ShardWatch(runs, {s.number: p for s, p in zip(plan, parts, strict=True)}).wait(finished)
    return runs


class ShardWatch:
    """Waits for the shards' flow runs; reschedules one that failed or whose process died."""

    def __init__(self, runs: dict[int, UUID], parts: dict[int, ShardParts]) -> None:
        self.runs, self.parts = runs, parts
        self.reschedules = dict.fromkeys(runs, 0)
        self.stale_s = heartbeat_s() * STALE_BEATS
        self.pending_s = max(PENDING_GRACE_S, self.stale_s)
        self.marks: dict[int, tuple[Any, float]] = {}  # an object's last beat, when seen

    def wait(self, finished: Any) -> None:
        """Return when every shard's run completed; raise when one cannot be completed."""
        from prefect import get_client

        waiting = set(self.runs)
        said = time.monotonic()
        with get_client(sync_client=True) as client:
            while waiting:
                if time.monotonic() - said >= PROGRESS_LOG_S:  # the parent is not silent
                    said = time.monotonic()
                    run_logger().info(
                        "waiting for shards: %d of %d done, still running: %s",
                        len(self.runs) - len(waiting),
                        len(self.runs),
                        ", ".join(str(n) for n in sorted(waiting)),
                    )
                for number in sorted(waiting):
                    flow_run = client.read_flow_run(self.runs[number])
                    state = flow_run.state
                    if state is None:
                        continue
                    if state.is_completed():
                        waiting.discard(number)
                        finished(number)
                    elif state.is_cancelled() or state.is_cancelling():
                        raise RuntimeError(
                            f"shard {number}'s flow run {flow_run.id} was cancelled; the output"
                            " files were not replaced"
                        )
                    elif state.is_final():
                        self.reschedule(client, number, f"it ended {state.type.value}")
                    elif state.is_running() or state.is_pending():
                        self.check_alive(client, number, state)
                if waiting:
                    time.sleep(POLL_S)

    def check_alive(self, client: Any, number: int, state: Any) -> None:
        """Reschedule a shard whose run is Running (or Pending) but shows no sign of life."""
        last = max(state.timestamp.timestamp(), self.last_beat(number))
        quiet = time.time() - last
        limit = self.stale_s if state.is_running() else self.pending_s
        if quiet > limit:
            self.reschedule(client, number, f"its process gave no heartbeat for {quiet:.0f}s")

    def last_beat(self, number: int) -> float:
        """When shard `number` last beat: a local file's time; for an object, when this
        process first saw its content change (this host's clock, not the worker's)."""
        heartbeat = self.parts[number].heartbeat
        mark = beat_mark(heartbeat)
        if isinstance(heartbeat, Path) or mark is None:
            return mark if isinstance(mark, float) else 0.0
        seen = self.marks.get(number)
        if seen is None or seen[0] != mark:
            seen = self.marks[number] = (mark, time.time())
        return seen[1]

    def reschedule(self, client: Any, number: int, why: str) -> None:
        """Put the shard's flow run back in the queue (`AwaitingRetry`), up to `RESCHEDULES`."""
        from prefect.states import AwaitingRetry, Crashed

        run_id = self.runs[number]
        if self.reschedules[number] >= RESCHEDULES:
            raise RuntimeError(
                f"shard {number}'s flow run {run_id} did not complete ({why}) after"
                f" {RESCHEDULES} re-runs; the output files were not replaced. Run the flow"
                " again: the records already done come from the record cache"
            )
        self.reschedules[number] += 1
        run_logger().warning(
            "shard %d (flow run %s): %s; running it again (%d of %d), it resumes from the"
            " record cache",
            number,
            run_id,
            why,
            self.reschedules[number],
            RESCHEDULES,
        )
        state = client.read_flow_run(run_id).state
        if state is not None and not state.is_final():
            client.set_flow_run_state(run_id, Crashed(message=why), force=True)
        client.set_flow_run_state(run_id, AwaitingRetry(), force=True)
