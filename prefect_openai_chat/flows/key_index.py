"""`KeyIndex`: the first line of every record key, in bounded memory.

A night must find a duplicate key among all the records it has read, so it keeps every
key. In a dict that is ~130 bytes a record (13 MiB for 100,000 records): the one part of
a night's memory that grows with the source. Past `spill_at` keys the index moves into a
private temporary SQLite database (on disk, a 2 MiB page cache; deleted when closed or
collected), so a night of any size holds the same memory.

Example:
    >>> index = KeyIndex(spill_at=2)
    >>> [index.setdefault(key, line) for line, key in enumerate(["a", "b", "c", "a"], 1)]
    [1, 2, 3, 1]
    >>> index.spilled, "c" in index, index["c"], "z" in index
    (True, True, 3, False)
    >>> index.setdefault("odd \\ud800 key", 9), index["odd \\ud800 key"]
    (9, 9)
"""

from __future__ import annotations

import sqlite3

SPILL_AT = 20_000  # keys held in a dict before the index moves to SQLite


def _blob(key: str) -> bytes:
    """The key as stored: any str, a lone surrogate too (SQLite's text would refuse it)."""
    return key.encode("utf-8", "surrogatepass")


class KeyIndex:
    """Key -> first line: `setdefault`, `in`, `[]`, as a dict; on disk past `spill_at`."""

    def __init__(self, spill_at: int | None = None) -> None:
        self.spill_at = SPILL_AT if spill_at is None else spill_at
        self._memory: dict[str, int] = {}
        self._db: sqlite3.Connection | None = None

    @property
    def spilled(self) -> bool:
        """Whether the keys live in the temporary database."""
        return self._db is not None

    def setdefault(self, key: str, line: int) -> int:
        """The first line seen for `key`, recording `line` when `key` is new."""
        if self._db is None:
            first = self._memory.setdefault(key, line)
            if len(self._memory) > self.spill_at:
                self._spill()
            return first
        added = self._db.execute("INSERT OR IGNORE INTO k VALUES (?, ?)", (_blob(key), line))
        return line if added.rowcount == 1 else self[key]

    def __setitem__(self, key: str, line: int) -> None:
        self.setdefault(key, line)

    def __contains__(self, key: object) -> bool:
        if self._db is None:
            return key in self._memory
        if not isinstance(key, str):
            return False
        found = self._db.execute("SELECT 1 FROM k WHERE key = ?", (_blob(key),)).fetchone()
        return found is not None

    def __getitem__(self, key: str) -> int:
        if self._db is None:
            return self._memory[key]
        row = self._db.execute("SELECT line FROM k WHERE key = ?", (_blob(key),)).fetchone()
        if row is None:
            raise KeyError(key)
        return int(row[0])

    def _spill(self) -> None:
        db = sqlite3.connect("", check_same_thread=False)  # "": a private temporary file
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        db.execute("CREATE TABLE k (key BLOB PRIMARY KEY, line INTEGER) WITHOUT ROWID")
        rows = ((_blob(key), line) for key, line in self._memory.items())
        db.executemany("INSERT INTO k VALUES (?, ?)", rows)
        self._db, self._memory = db, {}

    def close(self) -> None:
        """Remove the temporary database (also done when the index is collected)."""
        if self._db is not None:
            self._db.close()
