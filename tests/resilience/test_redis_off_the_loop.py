"""Issue 23: Redis is called neither on the event loop nor under a registry's lock.

A redis-server of the test's own is paused for writes (`CLIENT PAUSE ... WRITE`), so every
write of a circuit's storage waits: a guard that opens a failure count (INCR) waits in a
worker thread while the event loop keeps ticking, and a guard being made (pybreaker's SETNX)
holds up no other caller of the registry."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis_support import ThrowawayRedis, throwaway_redis_server

from prefect_openai_chat.resilience import RetryPolicy, call_with_retries, get_circuit_guard
from prefect_openai_chat.resilience.circuit import CircuitGuard
from prefect_openai_chat.resilience.registry import reset_registries

PAUSE_MS = 400


@pytest.fixture
def server() -> Iterator[ThrowawayRedis]:
    yield from throwaway_redis_server()
    reset_registries()


def test_a_guard_s_redis_writes_wait_in_a_worker_thread_not_on_the_loop(
    server: ThrowawayRedis, unique_key: str
) -> None:
    guard = CircuitGuard(unique_key, fail_max=100, redis_url=server.url, redis_cache_s=0)
    assert guard.shared and guard.storage.backend == "redis"
    admin = redis.Redis.from_url(server.url)

    async def refused(attempt: int) -> None:
        raise TimeoutError("stalled")  # an outage error: the guard counts it (INCR)

    async def main() -> tuple[float, float]:
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        admin.client_pause(PAUSE_MS, all=False)  # writes wait; reads go on
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            await call_with_retries(
                refused, policy=RetryPolicy(max_attempts=1), key=unique_key, guard=guard
            )
        took = time.perf_counter() - started
        done.set()
        await ticking
        return took, max(gaps)

    took, worst_gap = asyncio.run(main())
    assert took >= PAUSE_MS / 1000 * 0.6, "the failure count waited for the paused Redis"
    assert worst_gap < took / 2, f"the loop stalled {worst_gap:.3f} s of a {took:.3f} s call"
    assert guard.storage.counter == 1  # counted in Redis once the pause ended


def test_a_guard_being_made_holds_up_no_other_caller_of_the_registry(
    server: ThrowawayRedis, unique_key: str
) -> None:
    admin = redis.Redis.from_url(server.url)
    baseline = len(admin.client_list())
    admin.client_pause(PAUSE_MS * 3, all=False)
    made: list[CircuitGuard] = []
    maker = threading.Thread(
        target=lambda: made.append(get_circuit_guard(unique_key, redis_url=server.url))
    )
    maker.start()
    while len(admin.client_list()) == baseline:  # the maker has connected: it waits on SETNX
        time.sleep(0.005)
    other = get_circuit_guard(unique_key + "-local")  # the registry's lock is free
    assert maker.is_alive(), "the other caller got its guard while the first was being made"
    assert other.storage.backend == "memory"
    admin.client_unpause()
    maker.join(timeout=5)
    assert made and get_circuit_guard(unique_key, redis_url=server.url) is made[0]
