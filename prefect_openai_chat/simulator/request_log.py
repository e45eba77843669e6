"""The request log: one JSON line per chat request, for tests that check what was sent.

With `request_log="path.jsonl"` in the settings, the simulator appends a line for every
`/v1/chat/completions` request as soon as it has decided the answer: its index (since
the start or the last reset), the Unix time, the HTTP status (null when the connection
was reset or left to hang instead), the faults applied, the request body as text, and
its headers (all but `authorization`, whose key the simulator was given).
Each line is flushed at once, so a test can read the file while a run goes on (or after
the client was killed). The file is only appended to: `reset()` does not empty it.

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "requests.jsonl")
    >>> log = RequestLog(path)
    >>> log.write(0, b'{"model": "gpt-4o-mini"}', 200, ("fenced-json",))
    >>> log.close()
    >>> entry = read_request_log(path)[0]
    >>> entry["status"], entry["faults"], entry["body"]
    (200, ['fenced-json'], '{"model": "gpt-4o-mini"}')
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class RequestLog:
    """Appends one line per request to a JSONL file (touched from the server's loop only)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")

    def write(
        self,
        index: int,
        body: bytes,
        status: int | None,
        faults: tuple[str, ...] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Append the request `index` with its `body`, answer `status`, applied `faults` and
        `headers` (`authorization` left out)."""
        entry = {
            "i": index,
            "t": time.time(),
            "status": status,
            "faults": list(faults),
            "body": body.decode("utf-8", errors="replace"),
            "headers": {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"},
        }
        self._handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        """Close the file."""
        self._handle.close()


def read_request_log(path: str | Path) -> list[dict[str, Any]]:
    """The entries of a request log, oldest first (a line being written is left out)."""
    entries = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # the last line, half written while the server runs
    return entries
