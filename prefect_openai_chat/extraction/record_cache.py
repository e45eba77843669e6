"""A per-record result cache in SQLite, so that a re-run never pays twice for a record.

Keys come from `extraction_cache_key` (record content, schema, prompt, model,
generation parameters); values are the JSON of a finished record outcome. Only
final outcomes are stored: a transient error is tried again on the next run. A raw
model answer is kept up to `RAW_OUTPUT_LIMIT` bytes (`cap_raw_output`), here and in
the quarantine file, with a marker saying how much was cut.

Example:
    >>> import tempfile, os
    >>> from prefect_openai_chat.extraction.record_cache import RecordCache
    >>> cache = RecordCache(os.path.join(tempfile.mkdtemp(), "records.sqlite"))
    >>> cache.put_many({"k": '{"ok": true}'})
    >>> cache.get_many(["k", "missing"])
    {'k': '{"ok": true}'}
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

RAW_OUTPUT_LIMIT = 64 * 1024  # bytes of UTF-8 kept of a raw model answer
_SCHEMA = "CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, outcome TEXT NOT NULL)"
_CHUNK = 500  # SQLite's variable limit is far above; keeps statements small


def cap_raw_output(text: str | None, limit: int = RAW_OUTPUT_LIMIT) -> str | None:
    """`text` cut to `limit` bytes of UTF-8, with a marker saying how much was cut.

    Example:
        >>> cap_raw_output("x" * 10, limit=4)
        'xxxx\\n[prefect-openai-chat: 6 more bytes cut; the raw output had 10 bytes]'
    """
    if text is None or len(text) * 4 <= limit:  # at most 4 bytes a character: short enough
        return text
    data = text.encode("utf-8", errors="surrogatepass")
    if len(data) <= limit:
        return text
    kept = data[:limit].decode("utf-8", errors="ignore")  # never half a character
    cut = len(data) - len(kept.encode("utf-8", errors="surrogatepass"))
    return (
        f"{kept}\n[prefect-openai-chat: {cut} more bytes cut; the raw output had {len(data)} bytes]"
    )


def _capped(outcome: str) -> str:
    """A stored outcome's JSON with its `last_raw_output` capped (parsed only when long)."""
    if len(outcome) * 4 <= RAW_OUTPUT_LIMIT:
        return outcome
    value = json.loads(outcome)
    raw = value.get("last_raw_output") if isinstance(value, dict) else None
    if not isinstance(raw, str) or cap_raw_output(raw) == raw:
        return outcome
    value["last_raw_output"] = cap_raw_output(raw)
    return json.dumps(value, ensure_ascii=False)


class RecordCache:
    """A thread-safe key -> JSON store in one SQLite file (WAL mode, several processes welcome)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            self._db.commit()

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """The stored outcomes of `keys` that are present."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, outcome FROM records WHERE key IN ({marks})", chunk
                )
                found.update(rows.fetchall())
        return found

    def put_many(self, outcomes: Mapping[str, str]) -> None:
        """Store (or replace) outcomes in one transaction; long raw outputs are capped."""
        if not outcomes:
            return
        rows = [(key, _capped(outcome)) for key, outcome in outcomes.items()]
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO records (key, outcome) VALUES (?, ?)", rows
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()
