"""A loopback TCP proxy in front of the real PostgreSQL server, to cut or freeze it mid-run.

`passing`: bytes flow both ways. `freeze()`: every connection stays open and new ones are
accepted, but nothing is forwarded any more (a frozen server, a network gone quiet).
`cut()`: every connection is closed and new ones are refused (a server that went away).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from urllib.parse import urlsplit, urlunsplit


class TcpProxy:
    """Forwards 127.0.0.1:<port> to `upstream` (host, port) from one thread."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.mode = "passing"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._pairs: dict[socket.socket, socket.socket | None] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tcp-proxy", daemon=True)
        self._thread.start()

    def url_for(self, url: str) -> str:
        """`url` pointing at this proxy instead of its own host and port."""
        parts = urlsplit(url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def freeze(self) -> None:
        with self._lock:
            self.mode = "frozen"

    def cut(self) -> None:
        with self._lock:
            self.mode = "cut"
            for sock in list(self._pairs):
                self._drop(sock)
            self._selector.unregister(self._listener)
            self._listener.close()  # new connections are refused

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            for sock in list(self._pairs):
                self._drop(sock)
            if self.mode != "cut":
                self._listener.close()

    def _drop(self, sock: socket.socket) -> None:
        for one in (sock, self._pairs.pop(sock, None)):
            if one is not None:
                self._pairs.pop(one, None)
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(one)
                one.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                with self._lock:
                    self._handle(key.fileobj)  # type: ignore[arg-type]

    def _handle(self, sock: socket.socket) -> None:
        if sock is self._listener:
            if self.mode == "cut":
                return
            client, _ = self._listener.accept()
            upstream = None if self.mode == "frozen" else socket.create_connection(self.upstream)
            self._pairs[client] = upstream
            self._selector.register(client, selectors.EVENT_READ, None)
            if upstream is not None:
                self._pairs[upstream] = client
                self._selector.register(upstream, selectors.EVENT_READ, None)
            return
        if sock not in self._pairs:
            return
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return
        peer = self._pairs.get(sock)
        if self.mode == "passing" and peer is not None:
            peer.sendall(data)
        # frozen: read and kept from nobody; the sender never hears back
