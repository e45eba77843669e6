"""`Simulator`: start the server on a free loopback port, use it, stop it.

Example:
    >>> from openai import OpenAI
    >>> with Simulator(profile="ideal", seed=7) as sim:
    ...     client = OpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)
    ...     reply = client.chat.completions.create(
    ...         model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
    ...     )
    ...     sim.stats().by_status
    {200: 1}
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess as _subprocess
import sys
import time
import urllib.request
from types import TracebackType
from typing import Any

from prefect_openai_chat.simulator.app import create_app
from prefect_openai_chat.simulator.profiles import settings_for
from prefect_openai_chat.simulator.server import ServerThread, check_loopback
from prefect_openai_chat.simulator.settings import SimulatorSettings
from prefect_openai_chat.simulator.state import SimulatorState
from prefect_openai_chat.simulator.stats import SimulatorStats

READY_PREFIX = "prefect-openai-chat simulator listening on "


class Simulator:
    """An OpenAI-compatible server with faults, for tests and demos; sync and async context manager.

    Args:
        profile: one of `PROFILES` (`ideal`, `flaky`, `rate-limited`, `outage`,
            `sloppy-json`, `chaos`).
        settings: full settings instead of a profile.
        subprocess: serve from a child process (its own GIL) instead of a thread.
        host: loopback address to bind.
        port: port to bind; 0 picks a free one.
        **overrides: any `SimulatorSettings` field, e.g. `seed=7`, `rpm=60`.

    Example:
        >>> async def main() -> int:
        ...     async with Simulator(fault_rates={"503": 1.0}) as sim:
        ...         return sim.stats().requests
        >>> asyncio.run(main())
        0
    """

    def __init__(
        self,
        profile: str = "ideal",
        *,
        settings: SimulatorSettings | None = None,
        subprocess: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        **overrides: Any,
    ) -> None:
        if settings is not None:
            self._settings = settings.with_overrides(**overrides) if overrides else settings
        else:
            self._settings = settings_for(profile, **overrides)
        self.profile = profile
        self.subprocess = subprocess
        self.host = check_loopback(host)
        self.port = port
        self._thread: ServerThread | None = None
        self._state: SimulatorState | None = None
        self._process: _subprocess.Popen[str] | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> Simulator:
        """Start serving; returns self. Idempotent."""
        if self.running:
            return self
        if self.subprocess:
            self._start_process()
        else:
            app = create_app(self._settings)
            self._state = app.state.sim
            self._thread = ServerThread(app, self.host, self.port).start()
            self.port = self._thread.port
        return self

    def stop(self) -> None:
        """Stop serving (in-flight hangs are cut). Idempotent."""
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except _subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None

    @property
    def running(self) -> bool:
        """True while the server is up."""
        return self._thread is not None or (
            self._process is not None and self._process.poll() is None
        )

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Simulator:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # --- where to reach it ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>` (no path)."""
        if not self.running:
            raise RuntimeError("the simulator is not running; use `with Simulator(...)` or start()")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The `base_url` for an OpenAI client, ending in `/v1`."""
        return self.url + "/v1"

    @property
    def api_key(self) -> str:
        """A key the simulator accepts."""
        return self.settings.api_keys[0]

    @property
    def settings(self) -> SimulatorSettings:
        """The settings in force."""
        if self._process is not None and self.running:
            return SimulatorSettings.model_validate_json(self._admin("GET", "settings"))
        if self._state is not None:
            return self._state.settings
        return self._settings

    def client(self, **kwargs: Any) -> Any:
        """An `openai.OpenAI` client for this server, with `max_retries=0` unless given."""
        from openai import OpenAI

        kwargs.setdefault("max_retries", 0)
        return OpenAI(base_url=self.base_url, api_key=self.api_key, **kwargs)

    def async_client(self, **kwargs: Any) -> Any:
        """An `openai.AsyncOpenAI` client for this server, with `max_retries=0` unless given."""
        from openai import AsyncOpenAI

        kwargs.setdefault("max_retries", 0)
        return AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, **kwargs)

    # --- live control ------------------------------------------------------------------

    def stats(self) -> SimulatorStats:
        """What the server saw since the start or the last reset."""
        if self._thread is not None and self._state is not None:
            state = self._state
            return self._thread.call(state.stats)
        return SimulatorStats.model_validate_json(self._admin("GET", "stats"))

    def reset(self) -> None:
        """Zero counters and buckets, rewind the script, fault draws and outage clock."""
        if self._thread is not None and self._state is not None:
            self._thread.call(self._state.reset)
        else:
            self._admin("POST", "reset")

    def configure(self, **overrides: Any) -> SimulatorSettings:
        """Change settings live, e.g. `configure(fault_rates={"503": 1.0})`; returns them."""
        if self._thread is not None and self._state is not None:
            state = self._state
            self._settings = self._thread.call(lambda: state.configure(**overrides))
            return self._settings
        if not self.running:
            self._settings = self._settings.with_overrides(**overrides)
            return self._settings
        payload = json.loads(
            SimulatorSettings.model_validate(
                {**self._settings.model_dump(), **overrides}
            ).model_dump_json(include=set(overrides))
        )
        self._settings = SimulatorSettings.model_validate_json(
            self._admin("POST", "configure", payload)
        )
        return self._settings

    # --- subprocess mode -----------------------------------------------------------------

    def _start_process(self) -> None:
        command = [
            sys.executable, "-m", "prefect_openai_chat.simulator",
            "--host", self.host, "--port", str(self.port),
            "--settings-json", self._settings.model_dump_json(),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = _subprocess.Popen(command, stdout=_subprocess.PIPE, text=True, env=env)
        self._process = process
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line or line.startswith(READY_PREFIX):
                break
        if not line.startswith(READY_PREFIX):
            self.stop()
            raise RuntimeError("the simulator subprocess did not start; see its stderr above")
        self.port = int(line[len(READY_PREFIX) :].strip().rsplit(":", 1)[1].split("/")[0])

    def _admin(self, method: str, name: str, payload: Any = None) -> bytes:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.url}/_simulator/{name}", data=data, method=method,
            headers={"content-type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise ValueError(f"simulator admin {name} failed: {detail}") from None
