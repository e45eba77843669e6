"""The embedded ledger: one SQLite file, shared by the processes of one host.

The finished records live in the `records (key, outcome)` table the plugin has always
written, so a record cache file of an earlier version is read as it is; the claims
live beside it in a `claims (key, owner, lease_until)` table, and the Batch API's
runs in `batch_runs (run_key, state, updated_at)`, both created on first open.
Every write is one `BEGIN IMMEDIATE` transaction (SQLite's single writer), so a claim
and a completion never interleave. WAL mode lets readers run beside the writer; it
needs every user of the file on one host (no network file systems).

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "records.sqlite")
    >>> ledger = SqliteLedger(path)
    >>> sorted(ledger.claim_many(["a", "b"], owner="w1", lease_s=30))
    ['a', 'b']
    >>> ledger.release(["b"], owner="w1")
    >>> ledger.complete("a", '{"ok": true}')
    >>> sorted(ledger.claim_many(["a", "b"], owner="w2", lease_s=30))  # a is done, b is free
    ['b']
    >>> len(ledger)
    1
    >>> ledger.close()
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from prefect_openai_chat.extraction.ledger.base import capped, chunks, unique

_RECORDS = "CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, outcome TEXT NOT NULL)"
_CLAIMS = (
    "CREATE TABLE IF NOT EXISTS claims"
    " (key TEXT PRIMARY KEY, owner TEXT NOT NULL, lease_until REAL NOT NULL)"
)
_BATCH_RUNS = (
    "CREATE TABLE IF NOT EXISTS batch_runs"
    " (run_key TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at REAL NOT NULL)"
)
_CHUNK = 500  # SQLite's variable limit is far above; keeps statements small
BUSY_TIMEOUT_MS = 30_000  # how long a write waits for another process's write lock
T = TypeVar("T")


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused because another connection holds the lock."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _use_wal(db: sqlite3.Connection, patience_s: float = 30.0) -> None:
    """Put the file in WAL mode (it stays so); wait while other workers open it too.

    Switching the mode needs the file to itself and SQLite does not wait for that (no
    busy timeout applies), so many batches opening a new file at once retry here.
    """
    deadline = time.monotonic() + patience_s
    while db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class SqliteLedger:
    """A thread-safe ledger in one SQLite file (WAL mode, several processes of one host)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # `attempt` holds it around a method that takes it
        self._wait_ms = BUSY_TIMEOUT_MS  # how long a call waits for a lock: 0 inside `attempt`
        self._busy_ms = BUSY_TIMEOUT_MS  # the connection's busy timeout, as last set
        self._db = sqlite3.connect(
            self.path,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
        )
        with self._lock:
            _use_wal(self._db)
            self._db.execute("PRAGMA synchronous=NORMAL")
        with self._write():
            self._db.execute(_RECORDS)
            self._db.execute(_CLAIMS)
            self._db.execute(_BATCH_RUNS)

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        """The connection, to this thread alone, waiting for other processes' locks as long
        as the call may (`_wait_ms`). The busy timeout is set only when that changes: a
        night's calls all come through `attempt` and set it once, not twice a call."""
        with self._lock:
            if self._busy_ms != self._wait_ms:
                self._db.execute(f"PRAGMA busy_timeout = {self._wait_ms}")
                self._busy_ms = self._wait_ms
            yield self._db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (no upgrade from a read lock to deadlock on)."""
        with self._locked():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def attempt(self, method: Callable[..., T], *args: Any) -> tuple[bool, T | None]:
        """Run `method` (a method of this ledger) now if it needs no wait: `(True, result)`,
        or `(False, None)` when another thread holds the connection or another process the
        file's write lock (then nothing was done: call it again where waiting is fine).

        An event loop calls this first and a worker thread only when it must wait: a
        thread hop for every group of claims cost a night about 0.2 ms of CPU per record.
        """
        if not self._lock.acquire(blocking=False):
            return False, None
        self._wait_ms = 0
        try:
            return True, method(*args)
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            return False, None
        finally:
            self._wait_ms = BUSY_TIMEOUT_MS  # the next call outside `attempt` waits again
            self._lock.release()

    def _select(self, sql: str, keys: list[str], *params: object) -> list[tuple[str, str]]:
        """Rows of `sql` (`{marks}`: the keys) over `keys` in chunks; the caller holds the lock."""
        rows: list[tuple[str, str]] = []
        for chunk in chunks(keys, _CHUNK):
            marks = ",".join("?" * len(chunk))
            rows += self._db.execute(sql.format(marks=marks), [*chunk, *params]).fetchall()
        return rows

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """The stored outcomes of `keys` that are finished."""
        wanted = unique(keys)
        with self._locked():
            return dict(
                self._select("SELECT key, outcome FROM records WHERE key IN ({marks})", wanted)
            )

    def claim_many(self, keys: Iterable[str], owner: str, lease_s: float) -> set[str]:
        """Claim the unfinished, unclaimed (or lapsed) `keys` for `owner`; the keys granted."""
        wanted = unique(keys)
        if not wanted:
            return set()
        with self._write() as db:
            now = time.time()
            done = {
                k
                for k, _ in self._select(
                    "SELECT key, 1 FROM records WHERE key IN ({marks})", wanted
                )
            }
            held = {
                k
                for k, _ in self._select(
                    "SELECT key, 1 FROM claims WHERE key IN ({marks}) AND lease_until > ?",
                    wanted,
                    now,
                )
            }
            granted = [k for k in wanted if k not in done and k not in held]
            db.executemany(
                "INSERT OR REPLACE INTO claims (key, owner, lease_until) VALUES (?, ?, ?)",
                [(k, owner, now + lease_s) for k in granted],
            )
        return set(granted)

    def renew(self, keys: Iterable[str], owner: str, lease_s: float) -> set[str]:
        """Extend `owner`'s leases on `keys`; the keys it still holds."""
        wanted = unique(keys)
        if not wanted:
            return set()
        with self._write() as db:
            now = time.time()
            for chunk in chunks(wanted, _CHUNK):
                marks = ",".join("?" * len(chunk))
                db.execute(
                    f"UPDATE claims SET lease_until = ? WHERE owner = ? AND key IN ({marks})",
                    [now + lease_s, owner, *chunk],
                )
            sql = "SELECT key, 1 FROM claims WHERE key IN ({marks}) AND owner = ?"
            return {k for k, _ in self._select(sql, wanted, owner)}

    def complete(self, key: str, outcome: str) -> None:
        """Store `key`'s final outcome and end its claim, in one transaction."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO records (key, outcome) VALUES (?, ?)",
                (key, capped(outcome)),
            )
            db.execute("DELETE FROM claims WHERE key = ?", (key,))

    def complete_many(self, outcomes: Sequence[tuple[str, str]]) -> None:
        """Store each `(key, outcome)` and end its claim, all in one transaction."""
        if not outcomes:
            return
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO records (key, outcome) VALUES (?, ?)",
                [(key, capped(outcome)) for key, outcome in outcomes],
            )
            db.executemany("DELETE FROM claims WHERE key = ?", [(key,) for key, _ in outcomes])

    def release(self, keys: Iterable[str], owner: str) -> None:
        """Give up `owner`'s claims on `keys`."""
        wanted = unique(keys)
        if not wanted:
            return
        with self._write() as db:
            for chunk in chunks(wanted, _CHUNK):
                marks = ",".join("?" * len(chunk))
                db.execute(
                    f"DELETE FROM claims WHERE owner = ? AND key IN ({marks})", [owner, *chunk]
                )

    def holders(self, keys: Iterable[str]) -> dict[str, str]:
        """The owner of each claimed key of `keys`."""
        wanted = unique(keys)
        with self._locked():
            return dict(
                self._select("SELECT key, owner FROM claims WHERE key IN ({marks})", wanted)
            )

    def load_batch_run(self, run_key: str) -> str | None:
        """The saved state of the Batch API run `run_key`, or None."""
        with self._locked():
            row = self._db.execute(
                "SELECT state FROM batch_runs WHERE run_key = ?", (run_key,)
            ).fetchone()
        return None if row is None else str(row[0])

    def save_batch_run(self, run_key: str, state: str) -> None:
        """Save (replace) the state of the Batch API run `run_key`, in one transaction."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO batch_runs (run_key, state, updated_at) VALUES (?, ?, ?)",
                (run_key, state, time.time()),
            )

    def remove_batch_run(self, run_key: str) -> None:
        """Forget the Batch API run `run_key`."""
        with self._write() as db:
            db.execute("DELETE FROM batch_runs WHERE run_key = ?", (run_key,))

    def __len__(self) -> int:
        with self._locked():
            return int(self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()
