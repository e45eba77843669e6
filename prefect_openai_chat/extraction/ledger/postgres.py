"""The shared ledger: one PostgreSQL table that every worker on every host uses.

One row per record key: `outcome` once the record is finished, else the claim's
`owner` and `lease_until`. A claim is one `INSERT ... ON CONFLICT DO UPDATE ... WHERE`
statement: PostgreSQL locks the row and evaluates the condition on its latest version,
so of two workers racing for a key exactly one gets it, and a finished key is never
granted. Keys are claimed in sorted order, so two claimers of overlapping keys never
deadlock. Leases are measured on the database's clock (`now()`), so the hosts' clocks
need not agree.

The driver is psycopg 3 (`pip install 'prefect-openai-chat[postgres]'`): the
maintained successor of psycopg2, with binary wheels, thread-safe connections and
server-side parameter binding. The table is `prefect_openai_chat_ledger` in the first
schema of the connection's `search_path`; choose another schema in the URL, e.g.
`postgresql://user@host/db?options=-csearch_path%3Detl`.

Example (needs a PostgreSQL server; the test suite runs the same through `tests/ledger`):

    ledger = PostgresLedger("postgresql://postgres@127.0.0.1:5432/test")
    ledger.claim_many(["k"], owner="worker-1", lease_s=60)   # {'k'}
    ledger.complete("k", '{"ok": true}')
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from prefect_openai_chat.errors import LedgerError
from prefect_openai_chat.extraction.ledger.base import capped, unique

TABLE = "prefect_openai_chat_ledger"
_LOCK_ID = 0x5043_4C45_4447  # pg_advisory_xact_lock: one creator of the table at a time
T = TypeVar("T")


def masked_url(url: str) -> str:
    """`url` with its password replaced by `***`, for messages.

    Example:
        >>> masked_url("postgresql://etl:s3cret@db.internal:5432/night")
        'postgresql://etl:***@db.internal:5432/night'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def _driver() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise LedgerError(
            "a postgresql:// cache needs psycopg 3: pip install 'prefect-openai-chat[postgres]'"
        ) from exc
    return psycopg


class PostgresLedger:
    """The ledger in a PostgreSQL table, shared by every process that uses the same URL."""

    def __init__(self, url: str, table: str = TABLE, connect_timeout_s: float = 10.0) -> None:
        self.url, self.table = url, table
        self._psycopg = _driver()
        self._timeout = connect_timeout_s
        self._db = self._connect()
        self._ensure_table()
        self._t = self._psycopg.sql.Identifier(table)

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(
                self.url, autocommit=True, connect_timeout=max(1, int(self._timeout))
            )
        except self._psycopg.Error as exc:
            raise LedgerError(
                f"cannot reach the PostgreSQL ledger at {masked_url(self.url)}:"
                f" {str(exc).strip()}; check cache= (or pass cache=False to run without one)"
            ) from None

    def _ensure_table(self) -> None:
        sql = self._psycopg.sql
        exists = self._db.execute("SELECT to_regclass(%s)", (self.table,)).fetchone()[0]
        if exists is not None:
            return
        with self._db.transaction():  # concurrent CREATE ... IF NOT EXISTS can collide
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            self._db.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, outcome text,"
                    " owner text, lease_until timestamptz, finished_at timestamptz)"
                ).format(sql.Identifier(self.table))
            )

    def _run(self, query: str, params: dict[str, Any], rows: Callable[[Any], T]) -> T:
        """Run `query` (with `{t}` for the table); reconnect once if the connection broke."""
        statement = self._psycopg.sql.SQL(query).format(t=self._t)
        for attempt in (1, 2):
            try:
                return rows(self._db.execute(statement, params))
            except self._psycopg.OperationalError:
                if attempt == 2 or not (self._db.broken or self._db.closed):
                    raise
                self._db = self._connect()
        raise AssertionError("unreachable")

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """The stored outcomes of `keys` that are finished."""
        wanted = unique(keys)
        if not wanted:
            return {}
        return self._run(
            "SELECT key, outcome FROM {t} WHERE key = ANY(%(keys)s) AND outcome IS NOT NULL",
            {"keys": wanted},
            lambda cur: dict(cur.fetchall()),
        )

    def claim_many(self, keys: Iterable[str], owner: str, lease_s: float) -> set[str]:
        """Claim the unfinished, unclaimed (or lapsed) `keys` for `owner`; the keys granted."""
        wanted = unique(keys)
        if not wanted:
            return set()
        return self._run(
            "INSERT INTO {t} AS l (key, owner, lease_until)"
            " SELECT k, %(owner)s, now() + make_interval(secs => %(lease)s)"
            " FROM unnest(%(keys)s::text[]) AS k ORDER BY k"
            " ON CONFLICT (key) DO UPDATE"
            " SET owner = excluded.owner, lease_until = excluded.lease_until"
            " WHERE l.outcome IS NULL AND (l.lease_until IS NULL OR l.lease_until <= now())"
            " RETURNING key",
            {"keys": wanted, "owner": owner, "lease": float(lease_s)},
            lambda cur: {row[0] for row in cur.fetchall()},
        )

    def renew(self, keys: Iterable[str], owner: str, lease_s: float) -> set[str]:
        """Extend `owner`'s leases on `keys`; the keys it still holds."""
        wanted = unique(keys)
        if not wanted:
            return set()
        return self._run(
            "UPDATE {t} SET lease_until = now() + make_interval(secs => %(lease)s)"
            " WHERE key = ANY(%(keys)s) AND owner = %(owner)s AND outcome IS NULL"
            " RETURNING key",
            {"keys": wanted, "owner": owner, "lease": float(lease_s)},
            lambda cur: {row[0] for row in cur.fetchall()},
        )

    def complete(self, key: str, outcome: str) -> None:
        """Store `key`'s final outcome and end its claim, in one statement."""
        self._run(
            "INSERT INTO {t} (key, outcome, finished_at) VALUES (%(key)s, %(outcome)s, now())"
            " ON CONFLICT (key) DO UPDATE SET outcome = excluded.outcome,"
            " owner = NULL, lease_until = NULL, finished_at = excluded.finished_at",
            {"key": key, "outcome": capped(outcome)},
            lambda cur: None,
        )

    def release(self, keys: Iterable[str], owner: str) -> None:
        """Give up `owner`'s claims on unfinished `keys`."""
        wanted = unique(keys)
        if wanted:
            self._run(
                "DELETE FROM {t} WHERE key = ANY(%(keys)s) AND owner = %(owner)s"
                " AND outcome IS NULL",
                {"keys": wanted, "owner": owner},
                lambda cur: None,
            )

    def holders(self, keys: Iterable[str]) -> dict[str, str]:
        """The owner of each unfinished, claimed key of `keys`."""
        wanted = unique(keys)
        if not wanted:
            return {}
        return self._run(
            "SELECT key, owner FROM {t} WHERE key = ANY(%(keys)s) AND outcome IS NULL"
            " AND owner IS NOT NULL",
            {"keys": wanted},
            lambda cur: dict(cur.fetchall()),
        )

    def __len__(self) -> int:
        return self._run(
            "SELECT count(*) FROM {t} WHERE outcome IS NOT NULL",
            {},
            lambda cur: int(cur.fetchone()[0]),
        )

    def close(self) -> None:
        """Close the connection."""
        self._db.close()
