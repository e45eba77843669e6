"""A real `prefect server start` on loopback, shared by the deployment and browser tests."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest
from server_support import (
    SERVER_STARTUP_TIMEOUT_S,
    PrefectServer,
    free_port,
    prefect_command,
    server_env,
    stop_process,
    wait_healthy,
)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """`prefect server start` on 127.0.0.1:<free port>; its process group is stopped after."""
    root = tmp_path_factory.mktemp("prefect-server")
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
