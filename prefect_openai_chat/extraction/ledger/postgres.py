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
schema of the connection's `search_path` (the Batch API's runs beside it, in
`prefect_openai_chat_ledger_batch_runs`); choose another schema in the URL, e.g.
`postgresql://user@host/db?options=-csearch_path%3Detl`.

Deadlines: nothing waits on the server without one. A connection attempt gives up after
`CONNECT_TIMEOUT_S` (5 s); the server cancels a statement after `STATEMENT_TIMEOUT_S`
(10 s, its `statement_timeout`), and a server that does not answer at all (frozen, or
the network gone quiet) has its connection shut by the client `STATEMENT_GRACE_S` (2 s)
later. The *patience*, `PATIENCE_S` (30 s): a call that fails on the connection
reconnects and tries again, pausing 0.5 s, 1 s, 2 s, 4 s, ... between tries, for that
long; then the ledger gives up for good (every later call of this object fails at once
with the same `LedgerError`, so a batch's records become `error` outcomes "not sent"
instead of each waiting again), and a ledger of the same URL opened within the next
`PATIENCE_S` tries once, not a second time for the whole patience.

Example (needs a PostgreSQL server; the test suite runs the same through `tests/ledger`):

    ledger = PostgresLedger("postgresql://postgres@127.0.0.1:5432/test")
    ledger.claim_many(["k"], owner="worker-1", lease_s=60)   # {'k'}
    ledger.complete("k", '{"ok": true}')
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from prefect_openai_chat.errors import LedgerError
from prefect_openai_chat.extraction.ledger.base import capped, unique

TABLE = "prefect_openai_chat_ledger"
BATCH_RUNS_SUFFIX = "_batch_runs"  # the Batch API's runs: `prefect_openai_chat_ledger_batch_runs`
_LOCK_ID = 0x5043_4C45_4447  # pg_advisory_xact_lock: one creator of the table at a time
CONNECT_TIMEOUT_S = 5.0  # one connection attempt (libpq's floor is 2 s)
STATEMENT_TIMEOUT_S = 10.0  # one statement, cancelled by the server after it
STATEMENT_GRACE_S = 2.0  # then the client shuts a connection whose server never answered
PATIENCE_S = 30.0  # how long a call keeps reconnecting and trying before the ledger gives up
T = TypeVar("T")
logger = logging.getLogger("prefect_openai_chat.extraction.ledger")
_gave_up: dict[str, float] = {}  # URL -> when a ledger of it last gave up (monotonic)


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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _shut(db: Any, done: threading.Event, after_s: float) -> None:
    """Shut `db`'s socket, so that a call blocked on a server that never answers fails now."""
    if done.is_set():
        return
    logger.warning(
        "the PostgreSQL ledger did not answer within %.0f s; closing the connection", after_s
    )
    try:
        with socket.socket(fileno=os.dup(db.pgconn.socket)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, ValueError, AttributeError):  # already closed: nothing blocks on it
        pass


class PostgresLedger:
    """The ledger in a PostgreSQL table, shared by every process that uses the same URL.

    `connect=False` connects on first use (within the patience) instead of now: a batch
    opens its ledger so, and a server that is down then costs its records, not the batch.
    """

    def __init__(
        self,
        url: str,
        table: str = TABLE,
        connect_timeout_s: float | None = None,
        *,
        connect: bool = True,
        patience_s: float | None = None,
    ) -> None:
        self.url, self.table = url, table
        self._psycopg = _driver()
        self._t = self._psycopg.sql.Identifier(table)
        self.batch_table = f"{table}{BATCH_RUNS_SUFFIX}"
        self._b = self._psycopg.sql.Identifier(self.batch_table)
        self._timeout = CONNECT_TIMEOUT_S if connect_timeout_s is None else connect_timeout_s
        self._patience = PATIENCE_S if patience_s is None else patience_s
        self._lock = threading.RLock()  # one statement (and one reconnection) at a time
        self._db: Any = None
        self._failed: LedgerError | None = None
        if connect:
            with self._lock:
                try:
                    self._open()
                except self._psycopg.Error as exc:
                    raise LedgerError(
                        f"cannot reach the PostgreSQL ledger at {masked_url(url)}:"
                        f" {_one_line(exc)}; check cache= (or pass cache=False to run"
                        " without one)"
                    ) from None

    def _open(self) -> None:
        """Connect, set the statement timeout, make sure the table exists (one attempt)."""
        if self._db is not None:
            self._db.close()
        self._db = self._psycopg.connect(
            self.url, autocommit=True, connect_timeout=max(2, int(self._timeout))
        )
        ms = f"{int(STATEMENT_TIMEOUT_S * 1000)}ms"
        self._guarded(
            lambda db: db.execute("SELECT set_config('statement_timeout', %s, false)", (ms,))
        )
        self._guarded(self._ensure_table)

    def _guarded(self, action: Callable[[Any], T]) -> T:
        """`action(connection)`, its socket shut if the server has not answered in time."""
        db, done = self._db, threading.Event()
        after_s = STATEMENT_TIMEOUT_S + STATEMENT_GRACE_S
        watchdog = threading.Timer(after_s, _shut, args=(db, done, after_s))
        watchdog.daemon = True
        watchdog.start()
        try:
            return action(db)
        finally:
            done.set()
            watchdog.cancel()

    def _ensure_table(self, db: Any) -> None:
        sql = self._psycopg.sql
        found = db.execute(
            "SELECT to_regclass(%s), to_regclass(%s)", (self.table, self.batch_table)
        ).fetchone()
        if None not in found:
            return
        with db.transaction():  # concurrent CREATE ... IF NOT EXISTS can collide
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            db.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, outcome text,"
                    " owner text, lease_until timestamptz, finished_at timestamptz)"
                ).format(sql.Identifier(self.table))
            )
            db.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (run_key text PRIMARY KEY,"
                    " state text NOT NULL, updated_at timestamptz NOT NULL)"
                ).format(self._b)
            )

    def _run(self, query: str, params: dict[str, Any], rows: Callable[[Any], T]) -> T:
        """Run `query` (`{t}`: the table); reconnect and try again within the patience."""
        statement = self._psycopg.sql.SQL(query).format(t=self._t, b=self._b)
        with self._lock:
            if self._failed is not None:
                raise self._failed
            recently = time.monotonic() - _gave_up.get(self.url, -1e9) < self._patience
            deadline = time.monotonic() + (0.0 if recently else self._patience)
            pause = 0.5
            while True:
                try:
                    if self._db is None or self._db.closed or self._db.broken:
                        self._open()
                    result = self._guarded(lambda db: rows(db.execute(statement, params)))
                    _gave_up.pop(self.url, None)
                    return result
                except self._psycopg.OperationalError as exc:
                    last = exc
                if time.monotonic() + pause >= deadline:
                    break
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
            _gave_up[self.url] = time.monotonic()
            how = (
                f"(one more try, after a batch waited {self._patience:.0f} s for it a moment ago)"
                if recently
                else f"within {self._patience:.0f} s"
            )
            self._failed = LedgerError(
                f"the record ledger at {masked_url(self.url)} could not be reached {how}:"
                f" {_one_line(last)}"
            )
            raise self._failed

    def attempt(self, method: Callable[..., T], *args: Any) -> tuple[bool, T | None]:
        """Never now: every call is a round trip to the server, made in a worker thread."""
        return False, None

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

    def complete_many(self, outcomes: Sequence[tuple[str, str]]) -> None:
        """Store each `(key, outcome)` and end its claim, in one statement (last one wins)."""
        last = dict(outcomes)  # one row per key: ON CONFLICT cannot touch a row twice
        if not last:
            return
        self._run(
            "INSERT INTO {t} (key, outcome, finished_at)"
            " SELECT k, o, now() FROM unnest(%(keys)s::text[], %(outcomes)s::text[]) AS u(k, o)"
            " ON CONFLICT (key) DO UPDATE SET outcome = excluded.outcome,"
            " owner = NULL, lease_until = NULL, finished_at = excluded.finished_at",
            {"keys": list(last), "outcomes": [capped(o) for o in last.values()]},
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

    def load_batch_run(self, run_key: str) -> str | None:
        """The saved state of the Batch API run `run_key`, or None."""
        return self._run(
            "SELECT state FROM {b} WHERE run_key = %(key)s",
            {"key": run_key},
            lambda cur: None if (row := cur.fetchone()) is None else str(row[0]),
        )

    def save_batch_run(self, run_key: str, state: str) -> None:
        """Save (replace) the state of the Batch API run `run_key`, in one statement."""
        self._run(
            "INSERT INTO {b} (run_key, state, updated_at) VALUES (%(key)s, %(state)s, now())"
            " ON CONFLICT (run_key) DO UPDATE SET state = excluded.state,"
            " updated_at = excluded.updated_at",
            {"key": run_key, "state": state},
            lambda cur: None,
        )

    def remove_batch_run(self, run_key: str) -> None:
        """Forget the Batch API run `run_key`."""
        self._run("DELETE FROM {b} WHERE run_key = %(key)s", {"key": run_key}, lambda cur: None)

    def __len__(self) -> int:
        return self._run(
            "SELECT count(*) FROM {t} WHERE outcome IS NOT NULL",
            {},
            lambda cur: int(cur.fetchone()[0]),
        )

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._db is not None:
                self._db.close()
