"""A tiny OpenAI-shaped server that answers each request with one canned malformed response.

The request's `x-case` header names the case (see `CASES`); the simulator's raw ASGI
answers (`BodyResponse`, `StreamResponse`) and its loopback `ServerThread` serve them, so a
cut body really drops the TCP connection. Built for tests/reliability/test_malformed_responses.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from prefect_openai_chat.simulator.responses import (
    BodyResponse,
    Receive,
    Scope,
    Send,
    StreamResponse,
)
from prefect_openai_chat.simulator.server import ServerThread

MODEL = "gpt-4o-mini-2024-07-18"
USAGE = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}


@dataclass(frozen=True)
class Canned:
    """One answer: a body (or SSE frames when `frames` is set), its status and headers.

    `cut_after`: the connection drops after that many body bytes (Content-Length says more).
    """

    status: int = 200
    body: bytes = b""
    content_type: bytes = b"application/json"
    headers: dict[str, str] = field(default_factory=dict)
    frames: list[bytes] | None = None
    cut_after: int | None = None


def completion(**changes: Any) -> dict[str, Any]:
    """A well-formed chat completion (`Hi!`), with top-level keys changed or removed (None)."""
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi!"},
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }
    body.update(changes)
    return body


def choice(**changes: Any) -> dict[str, Any]:
    """`completion()` whose first choice has keys changed."""
    first = {**completion()["choices"][0], **changes}
    return completion(choices=[first])


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    """One SSE frame holding a chat.completion.chunk."""
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
        **extra,
    }
    return sse(body)


def sse(body: Any) -> bytes:
    return b"data: " + json.dumps(body).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"
USAGE_CHUNK = sse(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "choices": [],
        "usage": USAGE,
    }
)
HELLO_STREAM = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hi"}),
    chunk({"content": "!"}),
    chunk({}, "stop"),
]


def as_json(body: Any, status: int = 200, **headers: str) -> Canned:
    return Canned(status=status, body=json.dumps(body).encode(), headers=headers)


class CannedServer:
    """The ASGI app: `x-case` picks the answer from `cases`; counts the requests per case."""

    def __init__(self, cases: dict[str, Canned]) -> None:
        self.cases = cases
        self.requests: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:  # read the request body before answering
            message = await receive()
            more = message.get("more_body", False)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        name = headers.get("x-case", "")
        self.requests[name] = self.requests.get(name, 0) + 1
        canned = self.cases.get(name)
        if canned is None:
            await BodyResponse(404, {}, b'{"error": {"message": "no such case"}}')(
                scope, receive, send
            )
            return
        response_headers = {"x-request-id": f"req_{name}", **canned.headers}
        if canned.frames is not None:
            stream = StreamResponse(response_headers, canned.frames, end="cut")
            await stream(scope, receive, send)
            return
        answer = BodyResponse(
            canned.status,
            response_headers,
            canned.body,
            canned.content_type,
            cut_after=canned.cut_after,
        )
        await answer(scope, receive, send)


@contextmanager
def canned_server(cases: dict[str, Canned]) -> Iterator[tuple[str, CannedServer]]:
    """Serve `cases` on a free loopback port; yields (base URL, app)."""
    app = CannedServer(cases)
    thread = ServerThread(app).start()
    try:
        yield f"http://127.0.0.1:{thread.port}/v1", app
    finally:
        thread.stop()
