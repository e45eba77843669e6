"""The circuit shared through a real Redis: across processes, and when Redis goes away."""

from __future__ import annotations

import logging
import multiprocessing
import statistics
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis_support import ThrowawayRedis, free_port, throwaway_redis_server
from resilience_helpers import connection_error

from prefect_openai_chat.errors import CircuitOpenError
from prefect_openai_chat.resilience import CircuitGuard

pytestmark = pytest.mark.redis
CACHE_S = 0.25  # a little more than the default redis_cache_s (0.2 s)


def shared_guard(redis_url: str, prefix: str, **settings: Any) -> CircuitGuard:
    return CircuitGuard(
        "http://127.0.0.1:1/v1|shared", redis_url=redis_url, redis_prefix=prefix, **settings
    )


def test_state_is_shared_through_redis(redis_url: str, prefix: str) -> None:
    a = shared_guard(redis_url, prefix, fail_max=3, reset_timeout_s=30.0)
    b = shared_guard(redis_url, prefix, fail_max=3, reset_timeout_s=30.0)
    assert a.storage.backend == "redis"
    a.record_failure(a.before_call(), connection_error())
    b.record_failure(b.before_call(), connection_error())
    a.record_failure(a.before_call(), connection_error())  # third failure across both: open
    time.sleep(CACHE_S)  # b reuses what it read from Redis for up to redis_cache_s
    with pytest.raises(CircuitOpenError) as info:
        b.before_call()
    assert "APIConnectionError" in (info.value.last_error or "")
    spent = []
    for _ in range(100):
        start = time.perf_counter()
        with pytest.raises(CircuitOpenError):
            b.before_call()
        spent.append(time.perf_counter() - start)
    # Fails fast through Redis too: the median, which a busy machine's stalls (a few slow
    # calls) do not move, as the mean of 100 calls did; and no call waits (for the 30 s
    # reset timeout, or a probe).
    assert statistics.median(spent) < 0.001, f"median {statistics.median(spent) * 1e3:.3f} ms"
    assert max(spent) < 5.0


def _probe_worker(redis_url: str, prefix: str, barrier: Any, out: Any) -> None:
    import threading

    guard = shared_guard(redis_url, prefix, fail_max=1, reset_timeout_s=0.5)
    inner = threading.Barrier(25)
    probes: list[Any] = []
    refused = 0
    lock = threading.Lock()

    def caller() -> None:
        nonlocal refused
        inner.wait()
        try:
            permit = guard.before_call()
            with lock:
                probes.append(permit)
        except CircuitOpenError:
            with lock:
                refused += 1

    barrier.wait()  # both processes start their 25 callers together
    threads = [threading.Thread(target=caller) for _ in range(25)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((len(probes), refused))
    barrier.wait()  # both have counted; now the probe (if it is ours) succeeds
    for permit in probes:
        guard.record_success(permit)
    barrier.wait()
    time.sleep(CACHE_S)  # the other process's change shows within redis_cache_s
    out.put(guard.state)


def test_exactly_one_probe_across_two_processes(redis_url: str, prefix: str) -> None:
    guard = shared_guard(redis_url, prefix, fail_max=1, reset_timeout_s=0.5)
    guard.record_failure(guard.before_call(), connection_error())
    assert guard.state == "open"
    time.sleep(0.6)  # the reset timeout has passed for everybody
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_probe_worker, args=(redis_url, prefix, barrier, out)) for _ in range(2)
    ]
    for p in procs:
        p.start()
    counts = [out.get(timeout=30) for _ in range(2)]
    states = [out.get(timeout=30) for _ in range(2)]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert sum(c[0] for c in counts) == 1  # one probe among 50 callers in 2 processes
    assert sum(c[1] for c in counts) == 49
    assert states == ["closed", "closed"]
    assert guard.state == "closed"


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    yield from throwaway_redis_server()


def test_redis_stopped_mid_run_changes_nothing_but_a_warning(
    throwaway_redis: ThrowawayRedis, caplog: pytest.LogCaptureFixture
) -> None:
    guard = CircuitGuard(
        "http://127.0.0.1:1/v1|redis-outage",
        fail_max=3,
        reset_timeout_s=30.0,
        redis_url=throwaway_redis.url,
        redis_prefix=f"test-{uuid.uuid4().hex}",
        redis_recheck_s=0.2,
    )
    caplog.set_level(logging.INFO, logger="prefect_openai_chat.resilience")

    def calls(n: int) -> None:
        for _ in range(n):
            guard.record_success(guard.before_call())  # the caller's view: always let through

    calls(20)
    assert guard.storage.backend == "redis"
    throwaway_redis.stop()
    time.sleep(CACHE_S)  # the next call reads Redis again and finds it gone
    start = time.perf_counter()
    calls(200)
    assert time.perf_counter() - start < 2.0  # no hanging on a dead Redis
    assert guard.storage.backend == "memory"
    # failures still count locally while Redis is away
    for _ in range(3):
        guard.record_failure(guard.before_call(), connection_error())
    with pytest.raises(CircuitOpenError):
        guard.before_call()
    guard.reset()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "Redis" in r.message]
    assert len(warnings) == 1 and "unreachable" in warnings[0].message
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    throwaway_redis.start()
    time.sleep(0.25)
    calls(5)
    assert guard.storage.backend == "redis"
    assert any("reachable again" in r.message for r in caplog.records)
    assert redis.Redis.from_url(throwaway_redis.url).keys("*pybreaker:state")


def test_redis_down_at_start_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="prefect_openai_chat.resilience")
    guard = CircuitGuard(
        "http://127.0.0.1:1/v1|no-redis", redis_url=f"redis://127.0.0.1:{free_port()}/0"
    )
    guard.record_success(guard.before_call())
    assert guard.storage.backend == "memory"
    assert len([r for r in caplog.records if "unreachable" in r.message]) == 1
