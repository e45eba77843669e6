"""`SqliteLedger.attempt`: a call made at once on the event loop, or handed back untouched.

A SQLite ledger's claims and completions take microseconds, so `RecordClaims` makes them
on its event loop; when another thread holds the connection or another process holds the
file's write lock, waiting there would stall every call of the night, so `attempt` does
nothing and says so, and the call goes to a worker thread instead.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from prefect_openai_chat.extraction.ledger import SqliteLedger
from prefect_openai_chat.extraction.ledger.claims import RecordClaims


def test_a_call_that_needs_no_wait_runs_at_once(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "l.sqlite")
    assert ledger.attempt(ledger.claim_many, ["a", "b"], "w1", 30.0) == (True, {"a", "b"})
    assert ledger.attempt(ledger.get_many, ["a"]) == (True, {})
    ledger.close()


def test_another_process_s_write_lock_hands_the_call_back_with_nothing_done(
    tmp_path: Path,
) -> None:
    ledger = SqliteLedger(tmp_path / "l.sqlite")
    other = sqlite3.connect(tmp_path / "l.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing
    try:
        assert ledger.attempt(ledger.claim_many, ["a"], "w1", 30.0) == (False, None)
        assert ledger.attempt(ledger.complete_many, [("a", '{"ok": true}')]) == (False, None)
        assert ledger.attempt(ledger.get_many, ["a"]) == (True, {})  # WAL: readers never wait
    finally:
        other.execute("COMMIT")
        other.close()
    # nothing was half done, and the connection is usable (and waits again) afterwards
    assert ledger.claim_many(["a"], "w1", 30.0) == {"a"}
    ledger.complete("a", '{"ok": true}')
    assert ledger.get_many(["a"]) == {"a": '{"ok": true}'}
    ledger.close()


def test_a_connection_busy_in_another_thread_hands_the_call_back(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "l.sqlite")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with ledger._write():  # a worker thread in the middle of a transaction
            held.set()
            release.wait(10)

    worker = threading.Thread(target=hold)
    worker.start()
    held.wait(10)
    try:
        assert ledger.attempt(ledger.get_many, ["a"]) == (False, None)
    finally:
        release.set()
        worker.join()
    ledger.close()


def test_claims_go_to_a_worker_thread_while_another_process_writes(tmp_path: Path) -> None:
    """The claim waits (in a thread) for the other writer and is granted once it commits."""
    ledger = SqliteLedger(tmp_path / "l.sqlite")
    other = sqlite3.connect(tmp_path / "l.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")

    async def claim_while_locked() -> bool:
        async with RecordClaims(ledger) as claims:
            asking = asyncio.create_task(claims.try_claim("k"))
            await asyncio.sleep(0.3)
            assert not asking.done()  # waiting in a worker thread, the loop free meanwhile
            other.execute("COMMIT")
            return await asking

    try:
        assert asyncio.run(claim_while_locked()) is True
    finally:
        other.close()
        ledger.close()


def test_calls_made_through_attempt_set_no_busy_timeout_each(tmp_path: Path) -> None:
    """A night's claims and completions all come through `attempt`: the busy timeout is
    set once for them, not twice a call (each statement gives the GIL away)."""
    ledger = SqliteLedger(tmp_path / "l.sqlite")
    statements: list[str] = []
    ledger._db.set_trace_callback(statements.append)
    for n in range(5):
        assert ledger.attempt(ledger.claim_many, [f"k{n}"], "w1", 30.0) == (True, {f"k{n}"})
        assert ledger.attempt(ledger.complete_many, [(f"k{n}", "{}")]) == (True, None)
    pragmas = [s for s in statements if s.upper().startswith("PRAGMA")]
    assert pragmas == ["PRAGMA busy_timeout = 0"]
    ledger.close()


def test_a_call_after_attempt_waits_for_another_writer_again(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "l.sqlite")
    assert ledger.attempt(ledger.claim_many, ["a"], "w1", 30.0) == (True, {"a"})
    other = sqlite3.connect(tmp_path / "l.sqlite", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process writing for a moment
    threading.Timer(0.3, lambda: other.execute("COMMIT")).start()
    started = time.monotonic()
    try:
        assert ledger.claim_many(["b"], "w1", 30.0) == {"b"}  # waited, then granted
        assert time.monotonic() - started >= 0.25
    finally:
        time.sleep(0.1)
        other.close()
        ledger.close()
