"""The Prefect API unreachable for a while in the middle of an `extract_records` run.

The test starts its own `prefect server start` (own PREFECT_HOME and SQLite
database, a free loopback port), runs the flow in a child process pointed at it
(PREFECT_API_URL), and once the simulator has answered a few dozen requests it
freezes the whole server (SIGSTOP to its process group: connections hang, like a
partitioned or overloaded API) for several seconds, then lets it go on (SIGCONT).
The run must finish, every record must end exactly once (output + quarantine =
input, no duplicate), and the API must hold the run as Completed afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flow_support import read_jsonl, sample_tickets, write_jsonl
from server_support import (
    SERVER_STARTUP_TIMEOUT_S,
    PrefectServer,
    free_port,
    prefect_command,
    server_env,
    stop_process,
    tail,
    wait_healthy,
)

from prefect_openai_chat.simulator import Simulator

RECORDS = 200
FROZEN_AFTER, FROZEN_FOR_S = 30, 8.0  # simulator requests before the freeze; its length
REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = max(SERVER_STARTUP_TIMEOUT_S, 180.0)  # 2 cores shared by a whole suite

FLOW = """
import json, sys
from prefect_openai_chat import ChatModel, OpenAICredentials
from prefect_openai_chat.examples.tickets import TICKET_PROMPT
from prefect_openai_chat import ExtractionSpec, RunOptions
from prefect_openai_chat.flows import extract_records

base_url, api_key, folder = sys.argv[1:4]
model = ChatModel(
    credentials=OpenAICredentials(base_url=base_url, api_key=api_key),
    model="gpt-4o-mini-2024-07-18",
    read_timeout_s=5.0,
)
summary = extract_records(
    source=f"{folder}/tickets.jsonl",
    output=f"{folder}/out.jsonl",
    quarantine=f"{folder}/quarantine.jsonl",
    spec=ExtractionSpec(
        schema="prefect_openai_chat.examples.tickets:SupportTicket",
        prompt=TICKET_PROMPT,
        key_field="ticket_id",
    ),
    chat_model=model,
    run=RunOptions(
        chunk_size=20,
        concurrency=8,
        cache=f"{folder}/cache.sqlite",
    ),
)
print("SUMMARY " + json.dumps(summary), flush=True)
"""


class OwnServer:
    """`prefect server start` of this module's own, that a test may freeze or restart."""

    def __init__(self, root: Path) -> None:
        home = root / "home"
        home.mkdir()
        self.port = free_port()
        url = f"http://127.0.0.1:{self.port}"
        self.info = PrefectServer(url=url, home=home, log=root / "server.log")
        self.info.env = server_env(home, f"{url}/api")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = prefect_command(
            "server", "start", "--host", "127.0.0.1", "--port", str(self.port),
            "--no-scheduler", "--analytics-off",
        )  # fmt: skip
        with self.info.log.open("ab") as log_file:
            self.process = subprocess.Popen(
                command, cwd=self.info.home, env=self.info.env, stdin=subprocess.DEVNULL,
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_healthy(self.info.url, self.process, self.info.log, STARTUP_TIMEOUT_S)

    def signal(self, number: int) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, number)

    def stop(self) -> None:
        if self.process is not None:
            self.signal(signal.SIGCONT)  # never leave it frozen
            stop_process(self.process)
            self.process = None


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnServer]:
    server = OwnServer(tmp_path_factory.mktemp("faults-prefect-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def slow_sim() -> Iterator[Simulator]:
    """Answers take 50 ms, so the run spans the freeze."""
    with Simulator(profile="ideal", seed=9, ttft_s=0.05) as sim:
        yield sim


@pytest.mark.parametrize(
    "how", ["frozen", pytest.param("restarted", marks=pytest.mark.slow)]
)  # a restart waits for a second server start-up: a minute or more on a busy machine
def test_a_run_survives_the_prefect_api_going_away(
    how: str, api_server: OwnServer, slow_sim: Simulator, tmp_path: Path
) -> None:
    server = api_server.info
    tickets = sample_tickets(RECORDS)
    write_jsonl(tmp_path / "tickets.jsonl", tickets)
    env = {
        **server.env,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path / "results"),
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    started = time.monotonic()
    run = subprocess.Popen(
        [sys.executable, "-c", FLOW, slow_sim.base_url, slow_sim.api_key, str(tmp_path)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    timeline = []
    try:
        while slow_sim.stats().requests < FROZEN_AFTER and run.poll() is None:
            time.sleep(0.05)
        if how == "frozen":
            api_server.signal(signal.SIGSTOP)
        else:
            api_server.stop()
        timeline.append(f"{how} after request {slow_sim.stats().requests}")
        time.sleep(FROZEN_FOR_S)
        if how == "frozen":
            api_server.signal(signal.SIGCONT)
        else:
            api_server.start()  # the same port and database
        timeline.append(f"back after request {slow_sim.stats().requests}")
    finally:
        if api_server.process is None:
            api_server.start()
        api_server.signal(signal.SIGCONT)
    output, _ = run.communicate(timeout=240)
    text = output.decode("utf-8", "replace")
    wall = time.monotonic() - started
    stats = slow_sim.stats()
    print(f"prefect api {how}: {timeline}, requests {stats.requests}, wall {wall:.1f}s")
    print("\n".join(line for line in text.splitlines() if "WARNING" in line or "ERROR" in line))
    assert run.returncode == 0, text[-4000:] + "\n--- server log ---\n" + tail(server.log)
    assert f"{how} after request" in timeline[0] and int(timeline[0].split()[-1]) < RECORDS

    summary = json.loads(text.split("SUMMARY ", 1)[1].splitlines()[0])
    assert summary["records"] == RECORDS == summary["valid"] + summary["quarantined"]
    rows, quarantined = (
        read_jsonl(tmp_path / "out.jsonl"),
        read_jsonl(tmp_path / "quarantine.jsonl"),
    )
    keys = [r["_key"] for r in rows] + [q["key"] for q in quarantined]
    assert sorted(keys) == sorted(str(t["ticket_id"]) for t in tickets)
    assert len(set(keys)) == RECORDS
    assert stats.by_status.get(200, 0) <= RECORDS + 10  # nothing sent twice (a few re-prompts)

    with server.settings():
        from prefect import get_client

        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs()
    assert all(r.state and r.state.type.value == "COMPLETED" for r in runs), runs
