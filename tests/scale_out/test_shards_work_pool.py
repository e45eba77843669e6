"""One night, two workers: a sharded run on a real work pool, one worker killed mid-shard.

A real `prefect server`, a `process` work pool with two `prefect worker start`
processes, the shard deployment from `deployments/prefect.yaml`, Redis for the
circuit and the limiter, the simulator behind a request log. The parent run splits
the records into four shards, one flow run each. While a shard runs, its worker and
the shard's process are killed with SIGKILL; the parent sees the shard's heartbeat
stop, puts the same flow run back in the queue, the other worker runs it again and it
resumes from the record cache. Every record ends exactly once in the output, and no
record is paid twice except the few in flight at the moment of the kill.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psutil
import pytest
from scale_out_support import PROMPT, SCHEMA, LoggedSimulator, read_jsonl, write_records
from server_support import REPO_ROOT, PrefectServer, prefect_command, stop_process, tail

from prefect_openai_chat.flows.fan_out import HEARTBEAT_ENV

pytestmark = pytest.mark.slow

RECORDS = 400
SHARDS = 4
CONCURRENCY = 8
POOL = "llm-pool"  # the pool deployments/prefect.yaml names
BLOCK = "scale-out-chat-model"
DEPLOYMENT = "extract-records-shard/shard"
HEARTBEAT_S = "1.5"  # the parent takes a shard as dead after 5 beats without one
RUN_TIMEOUT_S = 240.0


def run_cli(server: PrefectServer, *args: str) -> str:
    done = subprocess.run(
        prefect_command(*args),
        cwd=REPO_ROOT,
        env=server.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"`prefect {' '.join(args)}` failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def create_process_pool(name: str) -> None:
    """What `prefect work-pool create NAME --type process` does, minus its registry lookup."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(name=name, type="process", base_job_template=template),
            overwrite=True,
        )


@pytest.fixture
def workers(
    scale_out_server: PrefectServer, tmp_path: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two `prefect worker start --pool llm-pool --limit 2`, polling every second."""
    env = {
        **scale_out_server.env,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "0",
        HEARTBEAT_ENV: HEARTBEAT_S,
    }
    started = []
    for n in (1, 2):
        log = (tmp_path / f"worker-{n}.log").open("wb")
        started.append(
            subprocess.Popen(
                prefect_command(
                    "worker", "start", "--pool", POOL, "--limit", "2", "--name", f"worker-{n}"
                ),
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    yield started
    for process in started:
        stop_process(process)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything it started, as a lost machine would stop them."""
    try:
        parent = psutil.Process(pid)
        family = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for process in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)


def worker_of(pid: int, workers: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes] | None:
    """The worker among `workers` that started process `pid`."""
    try:
        ancestors = {p.pid for p in psutil.Process(pid).parents()}
    except psutil.NoSuchProcess:
        return None
    return next((w for w in workers if w.pid in ancestors), None)


def shard_runs() -> list[Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_="extract-records shard"))
        )


def kill_one_worker_mid_shard(
    sim: LoggedSimulator, workers: list[subprocess.Popen[bytes]], deadline: float
) -> tuple[UUID, float]:
    """Wait until a shard is a fifth done, then SIGKILL its worker and the shard's process.

    Returns the killed shard's flow run and when it was killed.
    """
    per_shard = RECORDS // SHARDS
    while time.monotonic() < deadline:
        for flow_run in shard_runs():
            pid = flow_run.infrastructure_pid
            if not (flow_run.state and flow_run.state.is_running() and pid):
                continue
            number = int(flow_run.name.split()[-1].split("/")[0])
            lines = range((number - 1) * per_shard + 1, number * per_shard + 1)
            sent = {r.record for r in sim.log.requests if r.record in lines}
            worker = worker_of(int(str(pid).rsplit(":", 1)[-1]), workers)
            if worker is not None and len(sent) >= per_shard // 5:
                kill_tree(worker.pid)
                return flow_run.id, time.time()
        time.sleep(0.2)
    raise AssertionError("no shard was seen running before the deadline")


def test_a_killed_worker_s_shard_resumes_and_every_record_ends_once(
    scale_out_server: PrefectServer,
    workers: list[subprocess.Popen[bytes]],
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect_openai_chat import ChatModel, OpenAICredentials
    from prefect_openai_chat.flows import extract_records

    monkeypatch.setenv(HEARTBEAT_ENV, HEARTBEAT_S)
    source = write_records(tmp_path / "in.jsonl", RECORDS)
    out = tmp_path / "out"
    result: dict[str, Any] = {}
    with LoggedSimulator(profile="ideal", seed=11, ttft_s=0.05) as sim:
        with scale_out_server.settings():
            credentials = OpenAICredentials(base_url=sim.base_url, api_key=sim.api_key)
            ChatModel(
                credentials=credentials,
                model="gpt-4o-mini-2024-07-18",
                backoff_base_s=0.1,
                redis_url=redis_url,
            ).save(BLOCK, overwrite=True)
            create_process_pool(POOL)
            run_cli(
                scale_out_server, "deploy", "--prefect-file", "deployments/prefect.yaml",
                "--name", "shard",
            )  # fmt: skip

        def parent() -> None:
            with scale_out_server.settings():
                try:
                    result["summary"] = extract_records(
                        source=str(source),
                        schema=SCHEMA,
                        chat_model=BLOCK,
                        prompt=PROMPT,
                        output=str(out / "rows.jsonl"),
                        quarantine=str(out / "quarantine.jsonl"),
                        key_field="ticket_id",
                        batch_size=25,
                        concurrency=CONCURRENCY,
                        cache=str(tmp_path / "record-cache.sqlite"),
                        shards=SHARDS,
                        shard_deployment=DEPLOYMENT,
                    )
                except BaseException as exc:
                    result["error"] = exc

        thread = threading.Thread(target=parent, name="parent-run")
        thread.start()
        deadline = time.monotonic() + RUN_TIMEOUT_S
        with scale_out_server.settings():
            killed_run, killed_at = kill_one_worker_mid_shard(sim, workers, deadline)
        thread.join(max(1.0, deadline - time.monotonic()))
        logs = "\n".join(tail(tmp_path / f"worker-{n}.log") for n in (1, 2))
        assert not thread.is_alive(), f"the sharded run did not finish in time:\n{logs}"
        assert "error" not in result, f"the sharded run failed: {result.get('error')!r}\n{logs}"
        summary = result["summary"]

        # every record exactly once, in input order
        keys = [row["_key"] for row in read_jsonl(out / "rows.jsonl")]
        keys += [row["key"] for row in read_jsonl(out / "quarantine.jsonl")]
        assert sorted(keys) == [f"T{n:05d}" for n in range(1, RECORDS + 1)]
        assert summary["records"] == RECORDS == summary["valid"] + summary["quarantined"]
        # no record paid twice, but those in flight when the worker died
        paid = sim.log.paid()
        assert sorted(paid) == list(range(1, RECORDS + 1))
        twice = sim.log.paid_twice()
        # in flight at the kill: sent before it, answered after it (or just before it,
        # with the answer not yet in the record cache)
        in_flight = {
            r.record
            for r in sim.log.requests
            if r.record and r.arrived <= killed_at and r.answered >= killed_at - 1.0
        }
        assert twice <= in_flight, (
            f"paid twice though finished before the kill: {twice - in_flight}"
        )
        assert len(twice) <= 2 * CONCURRENCY  # a worker runs two shards: their calls in flight
        assert summary["from_cache"] > 0  # the re-run shard read its finished records back

    with scale_out_server.settings():
        from prefect import get_client

        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(killed_run)
    assert flow_run.state is not None and flow_run.state.is_completed()
    assert flow_run.run_count >= 2, f"the killed shard was not run again: {flow_run}"
    survivors = [w for w in workers if w.poll() is None]
    assert len(survivors) == 1
