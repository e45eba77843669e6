"""A TLS-terminating loopback relay in front of the plain simulator, signed by a test CA.

Each connection gets its own thread: the TLS handshake (requiring a client certificate
signed by `client_ca` when given), then bytes copied both ways to the simulator. A refused
handshake is closed the way real servers close it (send the alert, stop writing, drain),
so that the client reads the alert instead of a reset.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading

import trustme


class TLSRelay:
    """TLS on 127.0.0.1:`port` for the plain server at 127.0.0.1:`upstream_port`."""

    def __init__(
        self, upstream_port: int, ca: trustme.CA, client_ca: trustme.CA | None = None
    ) -> None:
        self.upstream_port = upstream_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(self.context)
        if client_ca is not None:
            self.context.verify_mode = ssl.CERT_REQUIRED
            client_ca.configure_trust(self.context)
        self.handshakes = 0  # TLS handshakes attempted (connections accepted)
        self.refused = 0  # handshakes that failed
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="tls-relay", daemon=True)

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> TLSRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.handshakes += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            with self._lock:
                self.refused += 1
            _linger_close(conn)
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        except OSError:
            tls.close()
            return
        _relay(tls, upstream)


def _relay(tls: ssl.SSLSocket, upstream: socket.socket) -> None:
    """Copy bytes both ways in one thread (an SSL socket is not for two threads at once)
    until either side closes or 30 s pass idle, then close both."""
    try:
        while True:
            ready = [tls] if tls.pending() else select.select([tls, upstream], [], [], 30)[0]
            if not ready:
                return
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                (upstream if sock is tls else tls).sendall(data)
    except OSError:
        pass
    finally:
        for sock in (tls, upstream):
            with contextlib.suppress(OSError):
                sock.close()


def _linger_close(conn: socket.socket) -> None:
    """Stop writing and drain what the client sent, so that it reads the alert, not a reset."""
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(2)
        while conn.recv(65536):
            pass
    conn.close()
