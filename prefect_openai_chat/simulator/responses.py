"""Raw ASGI answers: plain bodies, SSE streams with latency and stream faults, hangs and resets.

A reset needs the connection's transport: the runner's uvicorn protocol puts it in
`scope["simulator.transport"]` (see `server.py`).

Example:
    >>> BodyResponse(200, {"x-request-id": "req_1"}, b"{}").status
    200
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
TRANSPORT_KEY = "simulator.transport"


def encode_headers(headers: dict[str, str], content_type: bytes) -> list[tuple[bytes, bytes]]:
    """ASGI header list with the content type first."""
    out = [(b"content-type", content_type)]
    out.extend((k.encode(), v.encode()) for k, v in headers.items())
    return out


async def abort_connection(scope: Scope) -> bool:
    """Reset the client's TCP connection (RST, no response). False if the server can't."""
    transport = scope.get(TRANSPORT_KEY)
    if transport is None:
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    await asyncio.sleep(0)  # let the protocol see connection_lost before the app returns
    return True


async def wait_disconnect(receive: Receive, timeout: float) -> bool:
    """Wait up to `timeout` s for the client to go away; True if it did."""

    async def until_gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    try:
        await asyncio.wait_for(until_gone(), timeout)
    except asyncio.TimeoutError:
        return False
    return True


class BodyResponse:
    """A complete answer; with `cut_after` the connection drops after that many body bytes."""

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        body: bytes,
        content_type: bytes = b"application/json",
        delay_s: float = 0.0,
        cut_after: int | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.status, self.headers, self.body = status, headers, body
        self.content_type, self.delay_s, self.cut_after = content_type, delay_s, cut_after
        self.on_done = on_done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if self.delay_s > 0:
                await asyncio.sleep(self.delay_s)
            headers = encode_headers(self.headers, self.content_type)
            headers.append((b"content-length", str(len(self.body)).encode()))
            await send({"type": "http.response.start", "status": self.status, "headers": headers})
            if self.cut_after is not None and await _can_abort(scope):
                await send(
                    {
                        "type": "http.response.body",
                        "body": self.body[: self.cut_after],
                        "more_body": True,
                    }
                )
                await abort_connection(scope)
                return
            await send({"type": "http.response.body", "body": self.body})
        except OSError:
            pass  # the client went away
        finally:
            if self.on_done is not None:
                self.on_done()


async def _can_abort(scope: Scope) -> bool:
    return scope.get(TRANSPORT_KEY) is not None


class ResetResponse:
    """No answer at all: the connection is reset (or left to hang `hang_s` first)."""

    def __init__(self, hang_s: float = 0.0, on_done: Callable[[], None] | None = None) -> None:
        self.hang_s, self.on_done = hang_s, on_done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if self.hang_s > 0 and await wait_disconnect(receive, self.hang_s):
                return
            if not await abort_connection(scope):  # not our server: the closest we can do
                await send({"type": "http.response.start", "status": 502, "headers": []})
                await send({"type": "http.response.body", "body": b""})
        finally:
            if self.on_done is not None:
                self.on_done()


class StreamResponse:
    """An SSE stream; `end` is "done", "cut" (no [DONE]), "error" (error event) or "stall"."""

    def __init__(
        self,
        headers: dict[str, str],
        frames: list[bytes],
        *,
        first_delay_s: float = 0.0,
        per_frame_s: float = 0.0,
        end: str = "done",
        stall_s: float = 0.0,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.headers, self.frames = headers, frames
        self.first_delay_s, self.per_frame_s = first_delay_s, per_frame_s
        self.end, self.stall_s, self.on_done = end, stall_s, on_done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            headers = encode_headers(self.headers, b"text/event-stream; charset=utf-8")
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            if self.first_delay_s > 0:
                await asyncio.sleep(self.first_delay_s)
            if self.per_frame_s > 0:
                for frame in self.frames:
                    await send({"type": "http.response.body", "body": frame, "more_body": True})
                    await asyncio.sleep(self.per_frame_s)
            elif self.frames:
                body = b"".join(self.frames)
                await send({"type": "http.response.body", "body": body, "more_body": True})
            if self.end == "stall":
                if not await wait_disconnect(receive, self.stall_s):
                    await abort_connection(scope)
                return
            await send({"type": "http.response.body", "body": b""})
        except OSError:
            pass
        finally:
            if self.on_done is not None:
                self.on_done()
