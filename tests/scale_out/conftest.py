"""Scale-out tests: a real Prefect server of their own (as tests/deploy starts one)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))

from server_support import (
    SERVER_STARTUP_TIMEOUT_S,
    PrefectServer,
    free_port,
    prefect_command,
    server_env,
    stop_process,
    wait_healthy,
)


@pytest.fixture(scope="module")
def scale_out_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """`prefect server start` on 127.0.0.1:<free port>, stopped after the module."""
    root = tmp_path_factory.mktemp("scale-out-server")
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
    started = time.monotonic()
    try:
        wait_healthy(url, process, log, SERVER_STARTUP_TIMEOUT_S)
        print(f"prefect server at {url} healthy after {time.monotonic() - started:.1f}s")
        yield PrefectServer(url=url, home=home, log=log, env=env)
    finally:
        stop_process(process)
