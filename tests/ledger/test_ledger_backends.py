"""The ledger's contract, the same for both backends: claims, leases, completion, waiting.

Every test runs against a SQLite file and a PostgreSQL schema of its own
(`cache_setting`); the races run in real processes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Iterator

import pytest
from ledger_support import SPAWN_TIMEOUT_S, claim_and_die, race_for_keys

from prefect_openai_chat.extraction.ledger import (
    RAW_OUTPUT_LIMIT,
    Ledger,
    RecordClaims,
    open_ledger,
)
from prefect_openai_chat.results import RecordOutcome

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def ledger(cache_setting: str) -> Iterator[Ledger]:
    opened = open_ledger(cache_setting)
    assert opened is not None
    yield opened
    opened.close()


@pytest.fixture
def other(cache_setting: str) -> Iterator[Ledger]:
    """A second connection to the same ledger, as another worker has."""
    opened = open_ledger(cache_setting)
    assert opened is not None
    yield opened
    opened.close()


def test_complete_then_get_and_never_claimed_again(ledger: Ledger, other: Ledger) -> None:
    assert ledger.get_many(["a", "b"]) == {} and len(ledger) == 0
    assert ledger.claim_many(["a", "b"], "w1", lease_s=60) == {"a", "b"}
    ledger.complete("a", '{"ok": true}')

    assert other.get_many(["a", "b", "c"]) == {"a": '{"ok": true}'}  # b is claimed, not done
    assert other.claim_many(["a", "b", "c"], "w2", lease_s=60) == {"c"}
    assert len(other) == 1
    other.complete("b", '{"ok": false}')  # a final outcome ends any claim on the key
    assert ledger.get_many(["b"]) == {"b": '{"ok": false}'}
    assert ledger.renew(["a", "b"], "w1", lease_s=60) == set()  # finished: no lease left


def test_complete_many_stores_each_and_ends_their_claims(ledger: Ledger, other: Ledger) -> None:
    assert ledger.claim_many(["a", "b", "c"], "w1", lease_s=60) == {"a", "b", "c"}
    ledger.complete_many([("a", '{"n": 1}'), ("b", '{"n": 2}'), ("a", '{"n": 3}')])
    assert other.get_many(["a", "b", "c"]) == {"a": '{"n": 3}', "b": '{"n": 2}'}  # last wins
    assert other.holders(["a", "b", "c"]) == {"c": "w1"}  # finished keys hold no claim
    assert other.claim_many(["a", "b", "c"], "w2", lease_s=60) == set()
    ledger.complete_many([])  # nothing to store: no transaction, no error
    assert len(other) == 2


def test_claims_and_completions_asked_together_go_in_one_call(ledger: Ledger) -> None:
    calls: dict[str, int] = {"claim_many": 0, "complete_many": 0}

    class Counting:
        def __getattr__(self, name: str) -> object:
            if name in calls:
                calls[name] += 1
            return getattr(ledger, name)

    async def chunk() -> list[bool]:
        async with RecordClaims(Counting(), poll_s=0.01) as claims:  # type: ignore[arg-type]
            first = await asyncio.gather(*(claims.try_claim(k) for k in ["a", "b", "a"]))
            await asyncio.gather(*(claims.complete(k, '{"ok": true}') for k in ["a", "b"]))
            assert not claims.held
            return first

    assert asyncio.run(chunk()) == [True, True, False]  # a key asked twice: granted once
    assert calls == {"claim_many": 1, "complete_many": 1}
    assert ledger.get_many(["a", "b"]) == {"a": '{"ok": true}', "b": '{"ok": true}'}
    assert ledger.holders(["a", "b"]) == {}


def test_a_claim_is_granted_once_even_to_its_owner(ledger: Ledger) -> None:
    assert ledger.claim_many(["k", "k"], "w1", lease_s=60) == {"k"}
    assert ledger.claim_many(["k"], "w1", lease_s=60) == set()
    assert ledger.claim_many([], "w1", lease_s=60) == set()


def test_release_frees_only_the_owners_claims(ledger: Ledger, other: Ledger) -> None:
    assert ledger.claim_many(["a", "b"], "w1", lease_s=60) == {"a", "b"}
    other.release(["a", "b"], "w2")  # not its claims: nothing changes
    assert other.claim_many(["a", "b"], "w2", lease_s=60) == set()
    ledger.release(["a"], "w1")
    assert other.claim_many(["a", "b"], "w2", lease_s=60) == {"a"}


def test_a_lapsed_lease_goes_to_another_worker_and_a_renewed_one_does_not(
    ledger: Ledger, other: Ledger
) -> None:
    assert ledger.claim_many(["dead", "alive"], "w1", lease_s=0.2) == {"dead", "alive"}
    # Its owner renews a lease whether or not it ran out meanwhile, while nobody took it:
    # so the renewal holds however long this machine took to get here.
    assert ledger.renew(["alive"], "w1", lease_s=60) == {"alive"}
    assert other.claim_many(["alive"], "w2", lease_s=60) == set()
    # "dead" was not renewed: another worker gets it once its 0.2 s lease runs out, "alive" not
    assert wait_for_claim(other, ["dead", "alive"], "w2") == {"dead"}
    assert ledger.renew(["dead", "alive"], "w1", lease_s=5) == {"alive"}  # "dead" was lost


def wait_for_claim(ledger: Ledger, keys: list[str], owner: str, within_s: float = 30) -> set[str]:
    """What `owner` is granted of `keys` on its first successful claim, tried until then."""
    deadline = time.monotonic() + within_s
    while not (granted := ledger.claim_many(keys, owner, lease_s=60)):
        assert time.monotonic() < deadline, f"none of {keys} was granted in {within_s} s"
        time.sleep(0.05)
    return granted


def test_a_long_raw_output_is_capped_in_the_ledger(ledger: Ledger) -> None:
    huge = "é" * (RAW_OUTPUT_LIMIT)  # twice the limit in UTF-8
    outcome = RecordOutcome(index=0, key="T-1", ok=False, outcome="invalid", last_raw_output=huge)
    ledger.complete("k", outcome.model_dump_json())

    back = RecordOutcome.model_validate_json(ledger.get_many(["k"])["k"])
    assert back.outcome == "invalid" and back.last_raw_output is not None
    assert len(back.last_raw_output.encode()) < RAW_OUTPUT_LIMIT + 100
    assert back.last_raw_output.endswith(f"the raw output had {2 * RAW_OUTPUT_LIMIT} bytes]")


def test_two_processes_racing_for_the_same_keys_each_get_every_key_once(
    cache_setting: str, ledger: Ledger
) -> None:
    keys = [f"record-{n:03d}" for n in range(300)]
    barrier, results = SPAWN.Barrier(2), SPAWN.Queue()
    racers = [
        SPAWN.Process(target=race_for_keys, args=(cache_setting, keys, chunk, barrier, results))
        for chunk in (5, 7)  # the same keys in the same order, in overlapping chunks
    ]
    for racer in racers:
        racer.start()
    got = [results.get(timeout=SPAWN_TIMEOUT_S) for _ in racers]
    for racer in racers:
        racer.join(timeout=30)
    assert all(owner != "error" for owner, _ in got), got

    (owner_a, granted_a), (owner_b, granted_b) = got
    assert set(granted_a).isdisjoint(granted_b)
    assert sorted(granted_a + granted_b) == keys
    # Whether both won some keys depends on the scheduler (one racer may finish before the
    # other's first claim on a loaded machine); exclusivity is what the ledger promises.
    stored = ledger.get_many(keys)
    assert all(stored[k] == f'{{"owner": "{owner_a}"}}' for k in granted_a)
    assert all(stored[k] == f'{{"owner": "{owner_b}"}}' for k in granted_b)


def test_a_waiting_worker_gets_the_holders_outcome_without_claiming(
    ledger: Ledger, other: Ledger
) -> None:
    async def scenario() -> tuple[str | None, set[str]]:
        async with (
            RecordClaims(ledger, poll_s=0.05) as holder,
            RecordClaims(other, poll_s=0.05) as waiter,
        ):
            assert await holder.try_claim("k") and not await waiter.try_claim("k")
            waiting = asyncio.create_task(waiter.wait("k"))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            await holder.complete("k", '{"ok": true}')
            return await asyncio.wait_for(waiting, 5), set(waiter.held)

    stored, held = asyncio.run(scenario())
    assert stored == '{"ok": true}' and held == set()


def test_a_released_record_goes_to_one_waiter_of_the_batch(ledger: Ledger, other: Ledger) -> None:
    async def scenario() -> list[str | None]:
        async with (
            RecordClaims(ledger, poll_s=0.05) as holder,
            RecordClaims(other, poll_s=0.05) as waiter,
        ):
            assert await holder.try_claim("k")
            first, second = (asyncio.create_task(waiter.wait("k")) for _ in range(2))
            await asyncio.sleep(0.1)
            await holder.release("k")  # a transient failure: somebody else may try
            done, _ = await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
            assert [t.result() for t in done] == [None]  # one of them now holds the claim
            assert waiter.held == {"k"}
            await waiter.complete("k", '{"ok": true}')  # ... and pays: the other gets its outcome
            return [await asyncio.wait_for(t, 5) for t in (first, second)]

    assert sorted(asyncio.run(scenario()), key=str) == [None, '{"ok": true}']


def test_leases_are_renewed_while_the_batch_runs(
    ledger: Ledger, other: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    renewed_at: list[float] = []  # when each of the holder's renewals finished
    renew = ledger.renew

    def renew_and_note(keys: list[str], owner: str, lease_s: float) -> set[str]:
        held = renew(keys, owner, lease_s)
        renewed_at.append(time.monotonic())
        return held

    monkeypatch.setattr(ledger, "renew", renew_and_note)

    async def scenario() -> set[str]:
        async with RecordClaims(ledger, lease_s=1.0, renew_every_s=0.1) as holder:
            assert await holder.try_claim("k")
            first_lease_ends = time.monotonic() + 1.0
            # a renewal past the first lease's end: "k" is still held only if it was renewed
            while not renewed_at or renewed_at[-1] <= first_lease_ends:
                await asyncio.sleep(0.05)
            return other.claim_many(["k"], "w2", lease_s=60)

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == set()
    assert other.claim_many(["k"], "w2", lease_s=60) == {"k"}  # released on exit


def test_claims_made_while_leases_are_renewed_are_kept(
    ledger: Ledger, other: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    keys = [f"k{n}" for n in range(150)]

    async def scenario() -> set[str]:
        async with RecordClaims(ledger, lease_s=30, renew_every_s=0.005) as claims:
            for number, key in enumerate(keys):
                assert await claims.try_claim(key)
                if number % 3 == 0:
                    await claims.complete(key, '{"ok": true}')
            await asyncio.sleep(0.05)
            return set(claims.held)

    held = asyncio.run(scenario())
    assert held == {k for n, k in enumerate(keys) if n % 3}
    assert "leases ran out" not in caplog.text
    assert other.claim_many(keys, "w2", lease_s=60) == held  # released when the batch ended


def test_a_dead_local_workers_record_is_taken_over_without_waiting_for_its_lease(
    cache_setting: str, ledger: Ledger
) -> None:
    claimed = SPAWN.Event()
    dying = SPAWN.Process(target=claim_and_die, args=(cache_setting, ["k"], 600.0, claimed))
    dying.start()
    assert claimed.wait(SPAWN_TIMEOUT_S)
    dying.join(timeout=30)
    assert dying.exitcode == 3

    async def take_over() -> tuple[str | None, set[str], float]:
        async with RecordClaims(ledger, poll_s=0.05) as claims:
            started = time.monotonic()
            assert not await claims.try_claim("k")  # its 600 s lease is still running
            stored = await asyncio.wait_for(claims.wait("k"), 10)
            return stored, set(claims.held), time.monotonic() - started

    stored, held, waited = asyncio.run(take_over())
    assert stored is None and held == {"k"}  # this worker holds it now, and pays
    assert waited < 5  # the process is gone: no wait for the lease
