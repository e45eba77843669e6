"""`deployments/prefect.yaml` deployed to a real Prefect server and run by a real worker.

The README's steps, in order: save the `ChatModel` block the deployment names
(pointing at a local simulator), create the `llm-pool` process work pool,
`prefect deploy --prefect-file deployments/prefect.yaml`, trigger a run, then
`prefect worker start --pool llm-pool --run-once`. The run must complete, every
record must end once in the output or the quarantine file, and the artifacts must
be on the server.
"""

from __future__ import annotations

import itertools
import subprocess
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from server_support import (
    REPO_ROOT,
    PrefectServer,
    prefect_command,
    run_artifact_keys,
    stop_process,
    summary_artifact,
    tail,
)

from prefect_openai_chat.examples.tickets import sample_tickets_path
from prefect_openai_chat.simulator import Simulator

pytestmark = pytest.mark.slow

DEPLOYMENT = "extract-records/nightly-ticket-extraction"
BLOCK_NAME = "nightly-chat-model"  # the name deployments/prefect.yaml gives
POOL = "llm-pool"
MODEL = "gpt-4o-mini-2024-07-18"
RECORDS = 20
RUN_TIMEOUT_S = 120.0


def run_cli(server: PrefectServer, *args: str, timeout: float = 90.0) -> str:
    """Run a `prefect` CLI command from the repository root against the test server."""
    done = subprocess.run(
        prefect_command(*args),
        cwd=REPO_ROOT,
        env=server.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"`prefect {' '.join(args)}` failed:\n{output}"
    return output


def write_sample(path: Path, count: int) -> Path:
    """The first `count` shipped sample tickets as a JSONL file."""
    with sample_tickets_path().open(encoding="utf-8") as src, path.open("w") as dst:
        dst.writelines(itertools.islice(src, count))
    return path


def count_lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def save_chat_model(base_url: str, api_key: str) -> None:
    """The ChatModel block the deployment names, calling the simulator."""
    from prefect_openai_chat import ChatModel, OpenAICredentials

    credentials = OpenAICredentials(base_url=base_url, api_key=api_key)
    ChatModel(
        credentials=credentials,
        model=MODEL,
        retries={"backoff_base_s": 0.1},
    ).save(BLOCK_NAME, overwrite=True)


def create_process_pool(name: str) -> None:
    """What `prefect work-pool create NAME --type process` does, minus its registry lookup.

    The CLI asks the server for Prefect's collection registry, which the server fetches
    from the internet (and falls back to a local copy); tests stay on loopback.
    """
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(name=name, type="process", base_job_template=template),
            overwrite=True,
        )


def wait_terminal(flow_run_id: UUID, timeout_s: float) -> Any:
    """The flow run once it is in a final state (or whatever it is after `timeout_s`)."""
    from prefect import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            flow_run = client.read_flow_run(flow_run_id)
            if (flow_run.state and flow_run.state.is_final()) or time.monotonic() > deadline:
                return flow_run
            time.sleep(0.5)


def task_run_names(flow_run_id: UUID, expected: int, timeout_s: float = 15.0) -> set[str]:
    """The names of a flow run's task runs, as the UI lists them.

    The server records task runs from events, a moment after they happen: wait (bounded)
    until `expected` of them are there.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            task_runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            if len(task_runs) >= expected or time.monotonic() > deadline:
                return {task_run.name for task_run in task_runs}
            time.sleep(0.5)


def run_worker_until_final(
    server: PrefectServer, flow_run_id: UUID, log: Path, timeout_s: float
) -> Any:
    """`prefect worker start --pool llm-pool --run-once` until the run is final (bounded).

    One worker pass normally runs the flow and waits for it (`--limit 1`); a pass that
    polled too early is followed by another, until `timeout_s` is spent.
    """
    deadline = time.monotonic() + timeout_s
    command = prefect_command("worker", "start", "--pool", POOL, "--run-once", "--limit", "1")
    while True:
        with log.open("ab") as log_file:
            worker = subprocess.Popen(
                command,
                cwd=log.parent,
                env=server.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            worker.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        finally:
            stop_process(worker)
        flow_run = wait_terminal(flow_run_id, timeout_s=5)
        if (flow_run.state and flow_run.state.is_final()) or time.monotonic() > deadline:
            return flow_run


def test_prefect_yaml_deploys_and_a_worker_runs_it(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    from prefect.deployments import run_deployment

    source = write_sample(tmp_path / "tickets.jsonl", RECORDS)
    output = tmp_path / "out" / "rows.jsonl"
    quarantine = tmp_path / "out" / "quarantine.jsonl"
    timings: dict[str, float] = {}
    mark = time.perf_counter()

    with Simulator(profile="ideal", seed=3) as sim, prefect_server.settings():
        save_chat_model(sim.base_url, sim.api_key)
        create_process_pool(POOL)
        timings["blocks+pool"] = time.perf_counter() - mark
        deployed = run_cli(
            prefect_server,
            "deploy", "--prefect-file", "deployments/prefect.yaml",
            "--name", "nightly-ticket-extraction",
        )  # fmt: skip
        assert "nightly-ticket-extraction" in deployed
        timings["deploy"] = time.perf_counter() - mark

        from prefect import get_client

        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(DEPLOYMENT)
        # What prefect.yaml says reached the server: schedule, pool, limit, block name.
        assert deployment.work_pool_name == POOL
        assert deployment.parameters["chat_model"] == BLOCK_NAME
        assert [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules] == [  # type: ignore[union-attr]
            ("0 2 * * *", "Europe/Berlin")
        ]
        limit = deployment.global_concurrency_limit
        assert limit is not None and limit.limit == 1
        options = deployment.concurrency_options
        assert options is not None and options.collision_strategy == "ENQUEUE"

        flow_run = run_deployment(
            DEPLOYMENT,
            parameters={
                "source": str(source),
                "output": str(output),
                "quarantine": str(quarantine),
                # RunOptions as plain JSON, as a deployment's parameters are
                "run": {"cache": str(tmp_path / "record-cache.sqlite"), "chunk_size": 10},
            },
            timeout=0,  # only schedule it; the worker below runs it
        )
        worker_log = tmp_path / "worker.log"
        final = run_worker_until_final(prefect_server, flow_run.id, worker_log, RUN_TIMEOUT_S)
        timings["run"] = time.perf_counter() - mark

        assert final.state is not None and final.state.is_completed(), (
            f"flow run ended {final.state}, worker log:\n{tail(worker_log)}"
        )
        assert final.deployment_id == deployment.id
        valid, quarantined = count_lines(output), count_lines(quarantine)
        assert (valid, quarantined) == (RECORDS, 0)  # the ideal simulator answers every ticket

        summary = summary_artifact(flow_run.id).rows
        assert summary["records"] == str(RECORDS)
        assert (summary["valid"], summary["quarantined"]) == (str(valid), str(quarantined))
        assert summary["output"] == str(output)
        assert {
            "extract-records-progress",
            "extract-records-summary",
            "extract-records-quarantine",
        } <= run_artifact_keys(flow_run.id)
        # chunk_size=10: two chunk tasks, named for the UI
        assert task_run_names(flow_run.id, expected=2) == {
            "extract SupportTicket chunk 1/2",
            "extract SupportTicket chunk 2/2",
        }
        assert sim.stats().requests >= RECORDS
    print("timings (s, cumulative):", {k: round(v, 1) for k, v in timings.items()})
