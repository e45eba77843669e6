"""Start and stop a real `prefect server start` on loopback; helpers for its child processes.

The server runs in a child process with its own PREFECT_HOME (so its own SQLite
database) under pytest's tmp folder, on a free port of 127.0.0.1, without the
scheduler (the nightly cron must not add runs of its own) and without analytics.
Children that should talk to it (the `prefect` CLI, a worker, the demo) get
`PrefectServer.env`; code in the test process wraps its calls in
`PrefectServer.settings()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_STARTUP_TIMEOUT_S = 90.0


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prefect_command(*args: str) -> list[str]:
    """The `prefect` CLI of the running interpreter (no reliance on PATH)."""
    return [sys.executable, "-m", "prefect", *args]


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """Stop a child started with `start_new_session=True`, and everything it started."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, for failure messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class PrefectServer:
    """A running Prefect server: where it listens and the environment that reaches it."""

    url: str
    home: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        """The REST API, e.g. http://127.0.0.1:4321/api."""
        return f"{self.url}/api"

    @contextlib.contextmanager
    def settings(self) -> Iterator[None]:
        """Point Prefect in this process (blocks, clients, run_deployment) at the server.

        Prefect's events and log workers are made once per process, each bound to the API
        of the moment it was made: they are drained (flushed and stopped) on the way in
        and on the way out, so that this server gets this block's events and logs, and
        the session's API the later tests' (a worker left bound to a server stopped since
        lost every later event of its process: task runs never reached the API).
        """
        from prefect.settings import PREFECT_API_URL, temporary_settings

        drain_prefect_workers()
        with temporary_settings({PREFECT_API_URL: self.api_url}):
            try:
                yield
            finally:
                drain_prefect_workers()


def drain_prefect_workers(timeout_s: float = 30.0) -> None:
    """Flush and stop this process's Prefect events and log workers; the next event or
    log line starts new ones, bound to the API set then."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=timeout_s)


def server_env(home: Path, api_url: str) -> dict[str, str]:
    """The environment of every child process that belongs to the test server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        PREFECT_UI_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_CLI_PROMPT="false",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    """Wait until GET /api/health answers true, or fail with the server's log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"prefect server exited with {process.returncode} before it was healthy:\n"
                + tail(log)
            )
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"prefect server not healthy after {timeout_s:.0f}s:\n" + tail(log))


def running_server(root: Path) -> Iterator[PrefectServer]:
    """`prefect server start` on 127.0.0.1:<free port> under `root`; stopped afterwards."""
    home = root / "home"
    home.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = server_env(home, f"{url}/api")
    log = root / "server.log"
    command = prefect_command(
        "server", "start", "--host", "127.0.0.1", "--port", str(port),
        "--no-scheduler", "--analytics-off",
    )  # fmt: skip
    started = time.monotonic()
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_healthy(url, process, log, SERVER_STARTUP_TIMEOUT_S)
        print(f"prefect server at {url} healthy after {time.monotonic() - started:.1f}s")
        yield PrefectServer(url=url, home=home, log=log, env=env)
    finally:
        stop_process(process)


@dataclass
class SummaryArtifact:
    """The `extract-records-summary` table artifact of one flow run."""

    id: UUID
    rows: dict[str, str]


def summary_artifact(flow_run_id: UUID) -> SummaryArtifact:
    """Read a run's summary table through the Prefect client (call inside `server.settings()`)."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["extract-records-summary"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
    assert len(artifacts) == 1, f"expected one summary artifact for the run, got {artifacts}"
    artifact = artifacts[0]
    assert artifact.type == "table", artifact.type
    data: Any = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    return SummaryArtifact(id=artifact.id, rows={row["metric"]: row["value"] for row in data})


def run_artifact_keys(flow_run_id: UUID) -> set[str]:
    """The keys of every artifact a flow run created."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key for a in artifacts if a.key}
