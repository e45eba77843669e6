"""A shard's claims on its Batch API requests: two shards never pay for one request.

A sharded Batch API night runs one `BatchNight` per shard, each over its own lines. Two
records with the same request (the same prompt text: the same cache key) may fall in
two shards, and both would send it. So before a shard sends anything it claims its
requests in the shared record ledger, as the online path claims a record before its
call, with two differences a batch needs:

* the lease is long (`lease_for`: one round of batches, up to `deadline_s`, plus an
  hour) and renewed at the start of each round, not every few seconds by a live task;
* the owner is the shard (its run key), not the process: a shard run again after its
  worker died finds its claims its own and resumes its batches.

A request another shard holds is not sent: once its own batches have ended the shard
waits for that shard's outcome in the ledger, and sends the request online itself if
it gets the claim (the holder ended without a final outcome, or its lease ran out).
A shard waits only after it has finished or released every claim it holds, so two
shards never wait for each other.

Example:
    >>> import os, tempfile
    >>> from prefect_openai_chat.extraction.ledger import SqliteLedger
    >>> ledger = SqliteLedger(os.path.join(tempfile.mkdtemp(), "records.sqlite"))
    >>> first, second = ShardClaims(ledger, "shard-1", 60), ShardClaims(ledger, "shard-2", 60)
    >>> sorted(first.claim(["a", "b"])), sorted(second.claim(["b", "c"]))
    (['a', 'b'], ['c'])
    >>> sorted(first.claim(["a", "b"]))  # the same shard again, after a crash
    ['a', 'b']
    >>> first.release(["b"]); sorted(second.claim(["b"]))
    ['b']
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence

from prefect_openai_chat.extraction.batch_api.night import ELSEWHERE, OPEN, BatchNight
from prefect_openai_chat.extraction.batch_api.options import BatchApiOptions
from prefect_openai_chat.extraction.batch_api.store import NightStore
from prefect_openai_chat.extraction.engine import CallFn
from prefect_openai_chat.extraction.ledger import Ledger

HOUR_S = 3600.0


def lease_for(options: BatchApiOptions) -> float:
    """How long a shard's claim lasts between renewals: a round's wait, plus an hour."""
    return options.deadline_s + HOUR_S


class ShardClaims:
    """The claims of one shard (`owner`) in the record ledger."""

    def __init__(self, ledger: Ledger, owner: str, lease_s: float) -> None:
        self.ledger, self.owner, self.lease_s = ledger, owner, lease_s

    def claim(self, keys: Sequence[str]) -> set[str]:
        """The keys of `keys` this shard holds now: newly granted, or already its own."""
        granted = self.ledger.claim_many(keys, self.owner, self.lease_s)
        rest = [key for key in keys if key not in granted]
        if rest:
            own = [key for key, owner in self.ledger.holders(rest).items() if owner == self.owner]
            granted |= self.ledger.renew(own, self.owner, self.lease_s)
        return granted

    def renew(self, keys: Iterable[str]) -> None:
        """Extend the leases on `keys` (a round starts: its batches may take `deadline_s`)."""
        self.ledger.renew(keys, self.owner, self.lease_s)

    def release(self, keys: Iterable[str]) -> None:
        """Give `keys` back: another shard waiting for them may take them over."""
        self.ledger.release(keys, self.owner)

    # --- over a night's store, a page at a time ---

    def claim_new(self, store: NightStore) -> None:
        """Claim every new request of the night; those another shard holds are its to
        send (`elsewhere`)."""
        for page in store.id_pages("status = 'new'"):
            held = self.claim(page)
            store.set_status([key for key in page if key not in held], "elsewhere")

    def renew_open(self, store: NightStore) -> None:
        """Renew the claims of every request still open (a wave of batches starts)."""
        for page in store.id_pages(OPEN):
            self.renew(page)

    def release_ended(self, store: NightStore) -> None:
        """Give back the requests the night has ended (those without a final outcome are
        still claimed: another shard may take them over)."""
        for page in store.id_pages("status = 'done'"):
            self.release(page)

    async def await_others(
        self, night: BatchNight, online: CallFn, slots: int, warn: Callable[[str], None]
    ) -> None:
        """Wait for the outcomes of the night's requests other shards hold, read as cached
        records; send online (`online`, `slots` at a time) those this shard gets the claim
        of, with a warning, until none is left."""
        store = night.store
        while True:
            for page in store.id_pages(ELSEWHERE):
                found = await asyncio.to_thread(self.ledger.get_many, page)
                store.set_cached(found)
                rest = [key for key in page if key not in found]
                if rest:  # granted: its holder released it, or its lease ran out
                    store.set_status(await asyncio.to_thread(self.claim, rest), "taken")
            taken = [key for page in store.id_pages("status = 'taken'") for key in page]
            if taken:
                warn(
                    f"batch API: another shard gave up {len(taken)} request(s) (it ended them"
                    " without an answer, or its lease ran out): sending them online"
                )
                await night.send_online("status = 'taken'", online, slots)
                self.release(taken)  # those that ended without a final outcome
            if not store.count(ELSEWHERE):
                return
            await asyncio.sleep(night.options.poll_interval_s)
