"""Shards as flow runs of a deployment: started (`run_on_deployment`), watched until each
completes (`ShardWatch`), and rescheduled (`AwaitingRetry`) when one failed or its
process died, seen by its heartbeat (`beating`, every `heartbeat_s()` seconds).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.schemas.objects import FlowRun

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.flows.shards import (
    PartTarget,
    Shard,
    ShardParts,
    beat,
    beat_mark,
)
from prefect_openai_chat.storage import Location
from prefect_openai_chat.tasks import run_logger

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
