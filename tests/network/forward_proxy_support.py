"""A real forward proxy on loopback: proxy.py (PyPI) in a subprocess, on an ephemeral port.

proxy.py is a maintained, pure-Python HTTP(S) proxy that tunnels `CONNECT` and checks
Basic proxy credentials (`--basic-auth`). It runs in a subprocess (it forks workers of
its own, which a test process with Prefect's threads must not do), and records every
tunnel it opens through the `ConnectRecorder` plugin (connect_recorder.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROXY_USER, PROXY_PASSWORD = "etl-bot", "proxy-pass-7f3a9c21"  # what the test proxy asks for


class ForwardProxy:
    """proxy.py on 127.0.0.1, started and stopped by the test (a context manager)."""

    def __init__(self, workdir: Path, basic_auth: str | None = None) -> None:
        self.workdir = workdir
        self.basic_auth = basic_auth
        self.port = 0
        self.record = workdir / "connects.txt"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connects(self) -> list[str]:
        """The `CONNECT host:port` lines of the tunnels opened so far."""
        if not self.record.exists():
            return []
        return [line for line in self.record.read_text().splitlines() if line]

    def refusals(self) -> int:
        """How many requests the proxy refused for their credentials (407), from its log."""
        log = self.workdir / "proxy.log"
        return log.read_text().count("ProxyAuthenticationFailed") if log.exists() else 0

    def start(self, timeout: float = 20.0) -> ForwardProxy:
        port_file = self.workdir / "port.txt"
        args = [
            sys.executable, "-m", "proxy",
            "--hostname", "127.0.0.1", "--port", "0", "--port-file", str(port_file),
            "--num-acceptors", "1", "--num-workers", "1", "--threaded",
            "--log-level", "WARNING", "--log-file", str(self.workdir / "proxy.log"),
            "--plugins", "connect_recorder.ConnectRecorder",
        ]  # fmt: skip
        if self.basic_auth:
            args += ["--basic-auth", self.basic_auth]
        env = {**os.environ, "PROXY_RECORD_FILE": str(self.record)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        self._process = subprocess.Popen(args, env=env, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while not port_file.exists() or not port_file.read_text().strip():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"proxy.py did not start; see {self.workdir / 'proxy.log'}")
            time.sleep(0.05)
        self.port = int(port_file.read_text().strip())
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def __enter__(self) -> ForwardProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
