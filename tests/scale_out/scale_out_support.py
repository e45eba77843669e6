"""Helpers for the scale-out tests: a simulator that logs every request, numbered records.

`LoggedSimulator` is the project's simulator with one ASGI layer in front that keeps,
for every chat completion, when it arrived, when it was answered, its status and the
record marker (`[R00042]`) found in its body: the proof of which records were paid for,
and how often.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect_openai_chat.examples.tickets import sample_tickets_path
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.simulator.app import create_app
from prefect_openai_chat.simulator.server import ServerThread

MARKER = re.compile(rb"\[R(\d{5})\]")
PROMPT = "Subject: {subject}\n\n{body}"
SCHEMA = "prefect_openai_chat.examples.tickets:SupportTicket"


@dataclass(frozen=True)
class Request:
    """One chat completion the simulator served."""

    arrived: float
    answered: float
    status: int
    record: int | None  # the record marker in the body, None without one
    client_pid: int | None = None  # the process that sent it (None: not found)
    body: str = ""  # a digest of the request body: a re-prompt's differs, a re-send's does not


class RequestLog:
    """An ASGI layer that logs each chat completion passing through to `app`."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._pids: dict[int, int | None] = {}  # client port -> process id

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
            await self.app(scope, receive, send)
            return
        arrived = time.time()
        body: list[bytes] = []
        status = {"code": 0}

        async def logged_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
            return message

        async def logged_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await self.app(scope, logged_receive, logged_send)
        data = b"".join(body)
        found = MARKER.search(data)
        entry = Request(
            arrived,
            time.time(),
            status["code"],
            int(found[1]) if found else None,
            self._client_pid(scope),
            hashlib.sha256(data).hexdigest(),
        )
        with self._lock:
            self.requests.append(entry)

    def _client_pid(self, scope: Any) -> int | None:
        """The process on the other end of the request's connection (looked up once per port)."""
        port = (scope.get("client") or (None, None))[1]
        server = (scope.get("server") or (None, None))[1]
        if port is None:
            return None
        if port not in self._pids:
            import psutil

            # The client's end: its own port, and the server's as the other end (another
            # connection of another process may use the same local port to another server).
            self._pids[port] = next(
                (
                    c.pid
                    for c in psutil.net_connections(kind="tcp")
                    if c.laddr
                    and c.laddr.port == port
                    and c.raddr
                    and (server is None or c.raddr.port == server)
                ),
                None,
            )
        return self._pids[port]

    def paid(self) -> Counter[int]:
        """How many answered (200) requests each record had (re-prompts included)."""
        with self._lock:
            return Counter(r.record for r in self.requests if r.status == 200 and r.record)

    def paid_twice(self) -> set[int]:
        """The records one and the same request of which was answered (paid) more than once."""
        with self._lock:
            answered = Counter((r.record, r.body) for r in self.requests if r.status == 200)
        return {record for (record, _), times in answered.items() if record and times > 1}


class LoggedSimulator(Simulator):
    """The simulator, served in a thread behind a `RequestLog` (`self.log`)."""

    log: RequestLog

    def start(self) -> LoggedSimulator:
        if self.running:
            return self
        app = create_app(self._settings)
        self._state = app.state.sim
        self.log = RequestLog(app)
        self._thread = ServerThread(self.log, self.host, self.port).start()
        self.port = self._thread.port
        return self

    def __enter__(self) -> LoggedSimulator:
        return self.start()


def write_records(path: Path, count: int) -> Path:
    """`count` support tickets, numbered: key `T00001`..., subject `[R00001] ...`.

    Their text comes from the shipped sample, cycled; every record is unique.
    """
    with sample_tickets_path().open(encoding="utf-8") as handle:
        samples = [json.loads(line) for line in handle if line.strip()]
    with path.open("w", encoding="utf-8") as out:
        for n in range(1, count + 1):
            ticket = dict(samples[(n - 1) % len(samples)])
            ticket["ticket_id"] = f"T{n:05d}"
            ticket["subject"] = f"[R{n:05d}] {ticket.get('subject') or ''}"
            out.write(json.dumps(ticket) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
