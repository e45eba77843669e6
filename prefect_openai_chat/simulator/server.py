"""Serving the app with uvicorn on loopback: in a background thread, or in the foreground.

The HTTP protocol class is uvicorn's h11 one plus one thing: it hands each
connection's transport to the app (`scope["simulator.transport"]`), so that a
`reset` fault really resets the TCP connection.

Example:
    >>> from prefect_openai_chat.simulator import create_app
    >>> thread = ServerThread(create_app()).start()
    >>> thread.port > 0
    True
    >>> thread.stop()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from prefect_openai_chat.simulator.responses import TRANSPORT_KEY

T = TypeVar("T")
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class TransportH11Protocol(H11Protocol):
    """uvicorn's h11 protocol that exposes the connection's transport in the ASGI scope.

    It also sets TCP_NODELAY: uvicorn writes the head and the body of an answer
    separately, and Nagle's algorithm against the client's delayed ACK would add
    about 40 ms to every request.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        inner = self.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            scope[TRANSPORT_KEY] = transport
            await inner(scope, receive, send)

        self.app = app


def check_loopback(host: str) -> str:
    """Return `host` if it is a loopback address, else raise ValueError."""
    if host not in LOOPBACK_HOSTS:
        raise ValueError(
            f"the simulator binds to loopback only; got host {host!r}, use one of "
            f"{', '.join(LOOPBACK_HOSTS)}"
        )
    return "127.0.0.1" if host == "localhost" else host


def bind_socket(host: str, port: int, loopback_only: bool = True) -> socket.socket:
    """A listening TCP socket on loopback `host`:`port` (0 picks a free port); any
    address with `loopback_only=False` (the CLI's `--host 0.0.0.0`)."""
    if loopback_only:
        host = check_loopback(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: Any, log_level: str = "warning") -> uvicorn.Config:
    """The uvicorn settings the simulator runs with."""
    return uvicorn.Config(
        app,
        http=TransportH11Protocol,
        lifespan="off",
        log_level=log_level,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
        backlog=1024,
    )


class ServerThread:
    """uvicorn serving `app` on its own event loop in a daemon thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = check_loopback(host)
        self.requested_port = port
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> ServerThread:
        """Bind, start serving, and return once the server accepts connections."""
        sock = bind_socket(self.host, self.requested_port)
        self.port = sock.getsockname()[1]
        self._server = server = uvicorn.Server(uvicorn_config(self.app))
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            ready.set()
            try:
                loop.run_until_complete(server.serve(sockets=[sock]))
            except BaseException as exc:  # reported by start()
                self._error = exc
            finally:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()
                sock.close()

        self._thread = threading.Thread(target=run, name=f"simulator:{self.port}", daemon=True)
        self._thread.start()
        ready.wait(timeout)
        deadline = time.monotonic() + timeout
        while not server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the simulator failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("the simulator did not start in time")
            time.sleep(0.002)
        return self

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run `fn` on the server's event loop and return its result."""
        loop = self.loop
        if loop is None or self._thread is None or not self._thread.is_alive():
            raise RuntimeError("the simulator is not running; call start() first")

        async def wrapper() -> T:
            return fn()

        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(wrapper(), loop)
        return future.result(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving; hung requests are cut after a short grace period."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(0.5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
        self._server = self._thread = None
        self.loop = None
