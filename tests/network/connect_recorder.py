"""A proxy.py plugin, loaded by the proxy subprocess of forward_proxy_support.py: it appends each
tunnel the proxy opens (`CONNECT host:port`) to the file named by PROXY_RECORD_FILE."""

from __future__ import annotations

import os

from proxy.http.parser import HttpParser
from proxy.http.proxy import HttpProxyBasePlugin


class ConnectRecorder(HttpProxyBasePlugin):  # type: ignore[misc]
    """Records each request the proxy forwards, after its authentication passed."""

    def before_upstream_connection(self, request: HttpParser) -> HttpParser:
        method = (request.method or b"").decode()
        target = f"{(request.host or b'').decode()}:{request.port}"
        with open(os.environ["PROXY_RECORD_FILE"], "a", encoding="utf-8") as record:
            record.write(f"{method} {target}\n")
        return request
