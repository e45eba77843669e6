"""One night, two workers: a sharded run on a real work pool, one worker killed mid-shard.

A real `prefect server`, a `process` work pool with two `prefect worker start`
processes, the shard deployment from `deployments/prefect.yaml`, Redis for the
circuit and the limiter, PostgreSQL for the record ledger, the simulator behind a
request log. The parent run splits 800 records into four shards, one flow run each.
While a shard runs, its worker and the shard's process are killed with SIGKILL; the
parent sees the shard's heartbeat stop, puts the same flow run back in the queue, the
other worker runs it again and it resumes from the ledger. Every record ends exactly
once in the output, and no record is paid twice except the few in flight at the moment
of the kill.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pool_support import create_process_pool, kill_tree, worker_of
from scale_out_support import PROMPT, SCHEMA, LoggedSimulator, read_jsonl, write_records
from server_support import REPO_ROOT, PrefectServer, prefect_command, stop_process, tail

from prefect_openai_chat.flows.fan_out import HEARTBEAT_ENV

pytestmark = pytest.mark.slow

RECORDS = 800  # 200 a shard: with the simulator's 0.3 s answers, a shard runs for seconds
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


def shard_runs() -> list[Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_="extract-records shard"))
        )


def kill_one_worker_mid_shard(
    sim: LoggedSimulator, workers: list[subprocess.Popen[bytes]], deadline: float
) -> float:
    """Once no shard is starting and one is 40% sent, SIGKILL its worker and the worker's shards.

    (A shard killed while its process starts would wait out the parent's grace for
    starting processes, two minutes, before it is run again.)

    Returns when it killed them.
    """
    per_shard = RECORDS // SHARDS
    while time.monotonic() < deadline:
        runs = shard_runs()
        running = [r for r in runs if r.state and r.state.is_running() and r.infrastructure_pid]
        starting = [r for r in runs if r.state and r.state.is_pending()]
        for flow_run in [] if starting else running:
            lines = shard_lines(flow_run.name)
            sent = {r.record for r in sim.log.requests if r.record in lines}
            pid = int(str(flow_run.infrastructure_pid).rsplit(":", 1)[-1])
            worker = worker_of(pid, workers)
            if worker is not None and len(sent) >= per_shard * 2 // 5:
                kill_tree(worker.pid)
                return time.time()
        time.sleep(0.2)
    raise AssertionError("no shard was seen running 40% done before the deadline")


def shard_lines(name: str) -> range:
    """The records of the shard a flow run named `extract-records shard 2/4` runs."""
    number = int(name.split()[-1].split("/")[0])
    per_shard = RECORDS // SHARDS
    return range((number - 1) * per_shard + 1, number * per_shard + 1)


def repaid_after(sim: LoggedSimulator, killed_at: float) -> set[int]:
    """Records one request of which was answered before the kill and sent again after it
    by another process.

    The very same request twice from one process is the extraction's own re-ask: a model
    that gave the same invalid answer twice is sent the same correction again.
    """
    before = {
        (r.record, r.body): r.client_pid
        for r in sim.log.requests
        if r.status == 200 and r.answered < killed_at
    }
    return {
        r.record
        for r in sim.log.requests
        if r.status == 200
        and r.arrived > killed_at
        and r.record
        and (r.record, r.body) in before
        and (r.client_pid is None or r.client_pid != before[(r.record, r.body)])
    }


def sent_again_report(sim: LoggedSimulator, records: set[int], killed_at: float, logs: Path) -> str:
    """Each record's requests (seconds from the kill, status, client process) and what the
    workers' logs say of it: why a shard that was not killed sent it again."""
    lines = []
    for record in sorted(records):
        for r in (r for r in sim.log.requests if r.record == record):
            lines.append(
                f"R{record:05d}: arrived {r.arrived - killed_at:+.2f}s, answered"
                f" {r.answered - killed_at:+.2f}s, {r.status}, pid {r.client_pid},"
                f" body {r.body[:8]}"
            )
        key = f"T{record:05d}"
        for n in (1, 2):
            log = (logs / f"worker-{n}.log").read_text(encoding="utf-8", errors="replace")
            lines += [f"worker-{n}: {line}" for line in log.splitlines() if key in line]
    return "\n".join(lines)


def test_a_killed_worker_s_shard_resumes_and_every_record_ends_once(
    scale_out_server: PrefectServer,
    workers: list[subprocess.Popen[bytes]],
    redis_url: str,
    postgres_ledger_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect_openai_chat import ChatModel, ExtractionSpec, OpenAICredentials, RunOptions
    from prefect_openai_chat.flows import extract_records

    monkeypatch.setenv(HEARTBEAT_ENV, HEARTBEAT_S)
    source = write_records(tmp_path / "in.jsonl", RECORDS)
    out = tmp_path / "out"
    result: dict[str, Any] = {}
    with LoggedSimulator(profile="ideal", seed=11, ttft_s=0.3) as sim:
        with scale_out_server.settings():
            credentials = OpenAICredentials(base_url=sim.base_url, api_key=sim.api_key)
            ChatModel(
                credentials=credentials,
                model="gpt-4o-mini-2024-07-18",
                redis_url=redis_url,
                retries={"backoff_base_s": 0.1},
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
                        output=str(out / "rows.jsonl"),
                        quarantine=str(out / "quarantine.jsonl"),
                        spec=ExtractionSpec(
                            schema=SCHEMA,
                            prompt=PROMPT,
                            key_field="ticket_id",
                        ),
                        chat_model=BLOCK,
                        run=RunOptions(
                            chunk_size=25,
                            concurrency=CONCURRENCY,
                            cache=postgres_ledger_url,  # the ledger every worker shares
                            shards=SHARDS,
                            shard_deployment=DEPLOYMENT,
                            allow_local_paths=True,  # the pool's workers run on this host
                        ),
                    )
                except BaseException as exc:
                    result["error"] = exc

        thread = threading.Thread(target=parent, name="parent-run")
        thread.start()
        deadline = time.monotonic() + RUN_TIMEOUT_S
        with scale_out_server.settings():
            killed_at = kill_one_worker_mid_shard(sim, workers, deadline)
        thread.join(max(1.0, deadline - time.monotonic()))
        logs = "\n".join(tail(tmp_path / f"worker-{n}.log") for n in (1, 2))
        assert not thread.is_alive(), f"the sharded run did not finish in time:\n{logs}"
        assert "error" not in result, f"the sharded run failed: {result.get('error')!r}\n{logs}"
        summary = result["summary"]

        # every record exactly once, the rows in input order
        keys = [row["_key"] for row in read_jsonl(out / "rows.jsonl")]
        assert keys == sorted(keys)
        keys += [row["key"] for row in read_jsonl(out / "quarantine.jsonl")]
        assert sorted(keys) == [f"T{n:05d}" for n in range(1, RECORDS + 1)]
        assert summary["records"] == RECORDS == summary["valid"] + summary["quarantined"]
        # every record paid for; none paid again after the kill but those the killed
        # shards had not finished (at most their calls in flight): the resumed shards read
        # their finished records back from the ledger
        assert sorted(sim.log.paid()) == list(range(1, RECORDS + 1))
        repaid = repaid_after(sim, killed_at)
        assert len(repaid) <= 2 * CONCURRENCY, f"{len(repaid)} records paid again: {repaid}"
        assert summary["from_cache"] > 0  # the re-run shard read its finished records back
        print(
            f"{RECORDS} records, {len(sim.log.requests)} requests; after the kill"
            f" {len(repaid)} records paid again, {summary['from_cache']} read from the ledger"
        )

    with scale_out_server.settings():
        runs = shard_runs()
    rerun = [r for r in runs if r.run_count >= 2]
    assert rerun, f"no shard was run again: {[(r.name, r.run_count) for r in runs]}"
    assert all(r.state is not None and r.state.is_completed() for r in runs)
    rerun_records = {n for r in rerun for n in shard_lines(r.name)}
    assert repaid <= rerun_records, (
        "only the re-run shards' records were sent again:\n"
        + sent_again_report(sim, repaid - rerun_records, killed_at, tmp_path)
    )
    survivors = [w for w in workers if w.poll() is None]
    assert len(survivors) == 1
