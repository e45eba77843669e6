"""The per-record state of one Batch API night, on disk: flat memory whatever its size.

A night of a million records cannot hold its records, its request lines, its answers
and its outcomes in dicts. `NightStore` keeps them in a private temporary SQLite file
(removed when the night ends): `records`, one row per readable input record in input
order (the item, its cache key or why it was skipped), and `works`, one row per
distinct request (a pickled `Work`, its status, its request line, compressed once when
it is made, with the line's size and prompt tokens, the ledger's outcome when an earlier
run finished it). A work is saved at every step of the night; its line, the largest
part of it (the instructions and the schema of every request), is not saved again.
Every pass over the night reads it in pages of `PAGE` rows (keyset pagination on the
custom id), so the process holds at most a page of records, one batch's scratch
results on disk, and the counters. Nothing here survives a killed process, and nothing
needs to: a run started again reads its source again, and finds its batches (ids,
custom-id ranges) in the batch ledger, which is where resuming is decided. The folder
is named by the process id: a night killed before it could remove its file (several GB
for a million records) leaves it behind, and the next night on the host removes it
(`sweep`).

Example:
    >>> store = NightStore()
    >>> store.add_records([(0, b"item", "k1", None, None)])
    >>> store.add_works([("k1", b"work", 0)])
    >>> [key for key, _ in store.works_page("status = 'new'", ())]
    ['k1']
    >>> store.close()
"""

from __future__ import annotations

import os
import pickle
import shutil
import sqlite3
import tempfile
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

PAGE = 500

_SCHEMA = """
CREATE TABLE records (
    pos INTEGER PRIMARY KEY, item BLOB NOT NULL, custom_id TEXT, skipped TEXT, first INTEGER
);
CREATE TABLE works (
    custom_id TEXT PRIMARY KEY, work BLOB NOT NULL, status TEXT NOT NULL DEFAULT 'new',
    size INTEGER NOT NULL DEFAULT 0, tokens INTEGER NOT NULL DEFAULT 0, cached TEXT,
    first_pos INTEGER NOT NULL, line BLOB
);
CREATE INDEX works_status ON works (status, custom_id);
CREATE TABLE results (custom_id TEXT PRIMARY KEY, result BLOB NOT NULL);
"""


def pack(value: Any) -> bytes:
    """`value` as the store keeps it: pickled, then compressed (a request line repeats
    the instructions and schema of every other: about a fifth of the bytes on disk)."""
    return zlib.compress(pickle.dumps(value, pickle.HIGHEST_PROTOCOL), 1)


def unpack(blob: bytes) -> Any:
    """What `pack` stored (the night's own private file, written by this process)."""
    return pickle.loads(zlib.decompress(blob))


def sweep(parent: Path) -> list[Path]:
    """Remove the night folders in `parent` whose process has ended (killed nights);
    the folders removed."""
    removed = []
    for path in parent.glob("batch-night-*-*"):
        pid = path.name.split("-")[2]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


class NightStore:
    """The records and works of one night in a temporary SQLite file (one connection,
    used by one thread at a time)."""

    def __init__(self, folder: str | Path | None = None) -> None:
        sweep(Path(folder or tempfile.gettempdir()))
        prefix = f"batch-night-{os.getpid()}-"
        self.folder = Path(tempfile.mkdtemp(prefix=prefix, dir=folder))
        self.db = sqlite3.connect(self.folder / "night.sqlite", check_same_thread=False)
        self.lock = threading.RLock()
        self.db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-4096;" + _SCHEMA
        )

    # --- records ---

    def add_records(self, rows: Sequence[tuple[int, bytes, str | None, str | None, None]]) -> None:
        """Rows of `(pos, pickled item, custom id, skipped reason, None)`."""
        with self.lock:
            self.db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?)", rows)

    def add_works(self, rows: Sequence[tuple[str, bytes, int]]) -> None:
        """Rows of `(custom id, pickled work, first position)`; a repeated id keeps its first."""
        with self.lock:
            self.db.executemany(
                "INSERT OR IGNORE INTO works (custom_id, work, first_pos) VALUES (?, ?, ?)", rows
            )

    def records_page(self, after: int, size: int = PAGE) -> list[tuple[Any, ...]]:
        """Records after position `after`, in order, with their work's row:
        `(pos, item, custom_id, skipped, work, cached, first_pos)`."""
        with self.lock:
            return self.db.execute(
                "SELECT r.pos, r.item, r.custom_id, r.skipped, w.work, w.cached, w.first_pos"
                " FROM records r LEFT JOIN works w ON w.custom_id = r.custom_id"
                " WHERE r.pos > ? ORDER BY r.pos LIMIT ?",
                (after, size),
            ).fetchall()

    # --- works ---

    def id_pages(
        self, where: str = "1", params: Sequence[Any] = (), size: int = PAGE * 4
    ) -> Iterator[list[str]]:
        """The custom ids of the works matching `where`, sorted, a page at a time."""
        for page in self._pages("custom_id", where, params, size):
            yield [row[0] for row in page]

    def _pages(
        self, columns: str, where: str, params: Sequence[Any], size: int, after: str = ""
    ) -> Iterator[list[Any]]:
        """`columns` (the custom id first) of the works matching `where`, in custom-id order,
        a page at a time; each page is read before it is used, so a caller may update the
        works it holds."""
        while True:
            with self.lock:
                page = self.db.execute(
                    f"SELECT {columns} FROM works WHERE ({where}) AND custom_id > ?"
                    " ORDER BY custom_id LIMIT ?",
                    (*params, after, size),
                ).fetchall()
            if not page:
                return
            yield page
            after = page[-1][0]

    def set_cached(self, found: dict[str, str]) -> None:
        """Mark the works an earlier run finished, with the ledger's outcome."""
        with self.lock:
            self.db.executemany(
                "UPDATE works SET cached = ?, status = 'cached' WHERE custom_id = ?",
                [(outcome, key) for key, outcome in found.items()],
            )

    def set_status(self, keys: Iterable[str], status: str) -> None:
        """Set the status of the works `keys` (their pickled work is left as it is)."""
        with self.lock:
            self.db.executemany(
                "UPDATE works SET status = ? WHERE custom_id = ?", [(status, k) for k in keys]
            )

    def works_page(
        self, where: str, params: Sequence[Any], after: str = "", size: int = PAGE
    ) -> list[tuple[str, bytes]]:
        """Works matching `where` with a custom id after `after`, sorted: `(id, pickled work)`."""
        return next(self._pages("custom_id, work", where, params, size, after), [])

    def pages(self, where: str, params: Sequence[Any] = ()) -> Iterator[list[tuple[str, bytes]]]:
        """Every work matching `where`, a page at a time: `(id, pickled work)` (a page is read
        before it is used, so a caller may update the works it holds)."""
        return self._pages("custom_id, work", where, params, PAGE)

    def sizes(self, where: str, params: Sequence[Any]) -> Iterator[tuple[str, int, int]]:
        """`(custom id, line size, prompt tokens)` of the works matching `where`, sorted."""
        for page in self._pages("custom_id, size, tokens", where, params, PAGE * 4):
            yield from page

    def save_works(self, rows: Sequence[tuple[str, bytes, str]]) -> None:
        """Rows of `(custom id, pickled work, status)`."""
        with self.lock:
            self.db.executemany(
                "UPDATE works SET work = ?, status = ? WHERE custom_id = ?",
                [(work, status, key) for key, work, status in rows],
            )

    def save_lines(self, rows: Sequence[tuple[str, bytes, int, int]]) -> None:
        """Rows of `(custom id, line data, line size, prompt tokens)`: a work's new request
        line (compressed here), kept until the work has another."""
        with self.lock:
            self.db.executemany(
                "UPDATE works SET line = ?, size = ?, tokens = ? WHERE custom_id = ?",
                [(zlib.compress(data, 1), size, tokens, key) for key, data, size, tokens in rows],
            )

    def lines(self, where: str, params: Sequence[Any]) -> Iterator[tuple[str, bytes]]:
        """`(custom id, line data)` of the works matching `where`, sorted, a page at a time."""
        for page in self._pages("custom_id, line", where, params, PAGE):
            for custom_id, blob in page:
                if blob is None:
                    raise ValueError(f"work {custom_id[:16]} has no request line to send")
                yield custom_id, zlib.decompress(blob)

    def count(self, where: str, params: Sequence[Any] = ()) -> int:
        """Works matching `where`."""
        with self.lock:
            row = self.db.execute(f"SELECT COUNT(*) FROM works WHERE {where}", params).fetchone()
        return int(row[0])

    def nth(self, where: str, params: Sequence[Any], index: int) -> str | None:
        """The custom id of the `index`-th (0-based) work matching `where`, sorted."""
        with self.lock:
            row = self.db.execute(
                f"SELECT custom_id FROM works WHERE {where} ORDER BY custom_id LIMIT 1 OFFSET ?",
                (*params, index),
            ).fetchone()
        return None if row is None else str(row[0])

    # --- one batch's result lines, while it is collected ---

    def result(self, custom_id: str) -> bytes | None:
        """The pickled result kept for `custom_id`, if any."""
        with self.lock:
            row = self.db.execute(
                "SELECT result FROM results WHERE custom_id = ?", (custom_id,)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def put_result(self, custom_id: str, result: bytes) -> None:
        """Keep (or replace) the result of `custom_id`."""
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO results VALUES (?, ?)", (custom_id, result))

    def results_outside(self, where: str, params: Sequence[Any]) -> tuple[int, str | None]:
        """How many kept results belong to no work matching `where`, and the first of them."""
        with self.lock:
            row = self.db.execute(
                "SELECT COUNT(*), MIN(custom_id) FROM results WHERE custom_id NOT IN"
                f" (SELECT custom_id FROM works WHERE {where})",
                params,
            ).fetchone()
        return int(row[0]), row[1]

    def clear_results(self) -> None:
        """Forget the kept results (the batch is collected)."""
        with self.lock:
            self.db.execute("DELETE FROM results")

    def close(self) -> None:
        """Close and remove the file."""
        with self.lock:
            self.db.close()
        shutil.rmtree(self.folder, ignore_errors=True)
