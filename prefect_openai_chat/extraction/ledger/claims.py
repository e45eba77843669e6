"""One worker's claims while a batch runs: claim before paying, wait for the others' claims.

`RecordClaims` wraps a `Ledger` for the records of one batch. `try_claim(key)` claims a
record right before its first call; `complete(key, outcome)` stores a final outcome;
`release(key)` gives a record back after a transient failure. While the batch runs, a
background task renews the leases it holds every `renew_every_s`, so a long call (or a
task-tier wait for an open circuit) keeps its claim; if the process dies, the renewals
stop and the leases run out after `lease_s`.

A record claimed by someone else is awaited, never paid for: `wait(key)` returns the
outcome once the holder stores it, or `None` once this worker holds the claim itself
(the holder released it, or its lease ran out). One poller per batch looks up every
awaited key in one query every `poll_s`. A worker never waits while holding a claim
it has not started on, so batches that wait for each other cannot deadlock. A SQLite
ledger's call runs at once on the event loop when it needs no wait (`SqliteLedger.attempt`:
its connection and the file's write lock are free; a group is microseconds of SQLite);
otherwise, and always for PostgreSQL, in a worker thread: a database round trip, or
SQLite waiting for another process's write, never stalls the loop the calls run on.

Example:
    >>> import asyncio, tempfile, os
    >>> from prefect_openai_chat.extraction.ledger import SqliteLedger
    >>> ledger = SqliteLedger(os.path.join(tempfile.mkdtemp(), "records.sqlite"))
    >>> async def two_workers():
    ...     async with RecordClaims(ledger, poll_s=0.01) as first, RecordClaims(
    ...         ledger, poll_s=0.01
    ...     ) as second:
    ...         assert await first.try_claim("k") and not await second.try_claim("k")
    ...         waiting = asyncio.create_task(second.wait("k"))
    ...         await asyncio.sleep(0.05)
    ...         await first.complete("k", '{"ok": true}')
    ...         return await waiting
    >>> asyncio.run(two_workers())
    '{"ok": true}'
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar, cast

from prefect_openai_chat.extraction.ledger.base import (
    LEASE_S,
    POLL_S,
    RENEW_EVERY_S,
    Ledger,
    new_owner,
    owner_is_gone,
)

logger = logging.getLogger("prefect_openai_chat.extraction.ledger")
T = TypeVar("T")


class RecordClaims:
    """Claims of one batch in `ledger`, renewed while it runs; an async context manager."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        lease_s: float = LEASE_S,
        renew_every_s: float | None = None,
        poll_s: float = POLL_S,
        owner: str | None = None,
    ) -> None:
        self.ledger, self.lease_s, self.poll_s = ledger, lease_s, poll_s
        self.renew_every_s = renew_every_s or min(RENEW_EVERY_S, lease_s / 4)
        self.owner = owner or new_owner()
        self.held: set[str] = set()
        self._waiting: dict[str, deque[asyncio.Future[str | None]]] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        # Group commit: claims and completions asked for while one ledger call is under
        # way go together in the next one (one worker-thread hop and one transaction).
        self._to_claim: list[tuple[str, asyncio.Future[bool]]] = []
        self._to_complete: list[tuple[str, str, asyncio.Future[None]]] = []
        self._claimer: asyncio.Task[None] | None = None
        self._completer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RecordClaims:
        self._renewer = asyncio.create_task(self._renew_forever())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._completer is not None:  # outcomes handed over are stored, never dropped
            await asyncio.shield(self._completer)
        for task in (self._renewer, self._poller, self._claimer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for waiters in self._waiting.values():
            for future in waiters:
                future.cancel()
        self._waiting.clear()
        for _, claim in self._to_claim:
            claim.cancel()
        self._to_claim.clear()
        if self.held:
            await self._quietly("release", self.ledger.release, list(self.held), self.owner)
            self.held.clear()

    async def try_claim(self, key: str) -> bool:
        """Claim `key` now; False when it is finished or someone holds a live lease on it.

        Claims asked for while an earlier one is under way are sent together next; a key
        asked for twice in one go is granted to the first asker only.
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._to_claim.append((key, future))
        if self._claimer is None or self._claimer.done():
            self._claimer = asyncio.create_task(self._claim_pending())
        return await future

    async def _claim_pending(self) -> None:
        while self._to_claim:
            asked, self._to_claim = self._to_claim, []
            try:
                granted = await self._call(
                    self.ledger.claim_many, [key for key, _ in asked], self.owner, self.lease_s
                )
            except Exception as exc:  # each asker hears of it
                for _, future in asked:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.held |= granted  # held until completed or released, even if nobody waits
            for key, future in asked:
                mine = key in granted
                granted.discard(key)
                if not future.done():
                    future.set_result(mine)
                elif mine:  # the asker is gone: give the record back
                    await self.release(key)

    async def wait(self, key: str) -> str | None:
        """The outcome of `key` once another worker finishes it, or None once this one holds it."""
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, deque()).append(future)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())
        return await future

    async def complete(self, key: str, outcome: str) -> None:
        """Store `key`'s final outcome; a failure to store is logged (the outcome is not lost).

        Returns once it is stored: outcomes handed over while an earlier store is under
        way are stored together next, in one transaction (group commit).
        """
        self.held.discard(key)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._to_complete.append((key, outcome, future))
        if self._completer is None or self._completer.done():
            self._completer = asyncio.create_task(self._complete_pending())
        await asyncio.shield(future)  # a cancelled caller does not take the store back

    async def _complete_pending(self) -> None:
        while self._to_complete:
            handed, self._to_complete = self._to_complete, []
            outcomes = [(key, outcome) for key, outcome, _ in handed]
            await self._quietly("store the outcome of", self.ledger.complete_many, outcomes)
            for _, _, future in handed:
                if not future.done():
                    future.set_result(None)

    async def release(self, key: str) -> None:
        """Give `key` back (a transient failure: another worker or the next run tries again)."""
        if key in self.held:
            self.held.discard(key)
            await self._quietly("release", self.ledger.release, [key], self.owner)

    async def _call(self, action: Callable[..., T], *args: Any) -> T:
        """A ledger call: at once on this loop when it needs no wait (a SQLite ledger's
        `attempt`), else in a worker thread, so that a database round trip or another
        process's write never stalls the loop."""
        done, result = self.ledger.attempt(action, *args)
        if done:
            return cast(T, result)
        return await asyncio.to_thread(action, *args)

    async def _quietly(self, what: str, action: Any, *args: Any) -> None:
        try:
            await self._call(action, *args)
        except Exception as exc:  # the ledger is a checkpoint: the run goes on without it
            logger.warning(
                "could not %s a record in the ledger (%s: %s); its claim lapses after"
                " %.0f s and the record may be paid again by another worker or run",
                what,
                type(exc).__name__,
                exc,
                self.lease_s,
            )

    def _free_from_gone_owners(self, keys: list[str]) -> None:
        """Release the claims on `keys` of processes of this host that died (a crashed run).

        Their leases would run out anyway; a re-run on the same host need not wait for it.
        """
        gone: dict[str, list[str]] = {}
        for key, owner in self.ledger.holders(keys).items():
            if owner != self.owner and owner_is_gone(owner):
                gone.setdefault(owner, []).append(key)
        for owner, owned in gone.items():
            self.ledger.release(owned, owner)
            logger.info(
                "took over %d record(s) claimed by %s, a process of this host that is gone",
                len(owned),
                owner,
            )

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.renew_every_s)
            if not self.held:
                continue
            renewing = set(self.held)
            try:
                still = await self._call(
                    self.ledger.renew, list(renewing), self.owner, self.lease_s
                )
            except Exception as exc:  # tried again at the next beat, within the lease
                logger.warning("could not renew %d leases: %s", len(renewing), exc)
                continue
            # Claimed meanwhile: not asked about; finished or released meanwhile: not held.
            lost = (renewing - still) & self.held
            if lost:
                logger.warning(
                    "%d leases ran out before they were renewed (was the process paused?):"
                    " another worker may pay for those records too",
                    len(lost),
                )
                self.held -= lost

    async def _poll(self) -> None:
        while self._waiting:
            await asyncio.sleep(self.poll_s)
            try:
                await self._poll_once()
            except Exception as exc:  # every waiter hears of it: its record cannot go on
                for waiters in self._waiting.values():
                    for future in waiters:
                        if not future.done():
                            future.set_exception(exc)
                self._waiting.clear()

    async def _poll_once(self) -> None:
        for key in [k for k, waiters in self._waiting.items() if all(f.done() for f in waiters)]:
            del self._waiting[key]  # every waiter of it was cancelled
        keys = list(self._waiting)
        if not keys:
            return
        finished = await self._call(self.ledger.get_many, keys)
        for key, outcome in finished.items():
            for future in self._waiting.pop(key):
                if not future.done():
                    future.set_result(outcome)
        free = [k for k in keys if k not in finished]
        granted = set()
        if free:
            await asyncio.to_thread(self._free_from_gone_owners, free)
            granted = await self._call(self.ledger.claim_many, free, self.owner, self.lease_s)
        for key in granted:
            self.held.add(key)
            waiters = self._waiting[key]
            while waiters and waiters[0].done():
                waiters.popleft()
            if waiters:
                waiters.popleft().set_result(None)  # one waiter pays; the others wait for it
            else:
                await self.release(key)
            if not waiters:
                self._waiting.pop(key, None)
