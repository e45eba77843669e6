"""A circuit that opens while Redis is away stays open when Redis comes back.

While Redis is unreachable a guard keeps its state in memory; when Redis answers
again (a restarted, empty Redis, or one that other processes kept closed), what
this process learned alone, that the endpoint is down, must not be forgotten:
the open state, when it opened and why are written to Redis, so this process
and every other one fail fast until the probe.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator

import pytest
from redis_support import ThrowawayRedis, throwaway_redis_server

from prefect_openai_chat.errors import CircuitOpenError
from prefect_openai_chat.resilience import CircuitGuard

RECHECK_S = 0.2


@pytest.fixture
def own_redis() -> Iterator[ThrowawayRedis]:
    yield from throwaway_redis_server()


def guard_on(redis: ThrowawayRedis, prefix: str) -> CircuitGuard:
    return CircuitGuard(
        "http://127.0.0.1:1/v1|rejoin",
        fail_max=2,
        reset_timeout_s=30.0,
        redis_url=redis.url,
        redis_prefix=prefix,
        redis_recheck_s=RECHECK_S,
        redis_cache_s=0.0,
    )


def outage() -> BaseException:
    return ConnectionError("connection refused")


def cut_off(guard: CircuitGuard, port: int) -> None:
    """Point `guard`'s Redis client at `port` (1: nobody; a network split of one process)."""
    pool = guard.storage._client._client.connection_pool
    pool.connection_kwargs["port"] = port
    pool.disconnect()
    pool.reset()  # connections made before keep their port: make new ones


@pytest.mark.parametrize("restart", ["empty", "kept"])
def test_a_circuit_opened_while_redis_was_away_stays_open(
    own_redis: ThrowawayRedis, restart: str, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"rejoin-{uuid.uuid4().hex}"
    here, elsewhere = guard_on(own_redis, prefix), guard_on(own_redis, prefix)
    here.record_success(here.before_call())
    elsewhere.record_success(elsewhere.before_call())
    caplog.set_level(logging.INFO, logger="prefect_openai_chat.resilience")

    if restart == "empty":  # Redis killed; it comes back empty
        own_redis.stop()
    else:  # Redis stays up, and closed, for the other process; only this one loses it
        cut_off(here, 1)
    for _ in range(2):
        here.record_failure(here.before_call(), outage())
    assert here.state == "open" and here.storage.backend == "memory"
    with pytest.raises(CircuitOpenError):
        here.before_call()

    if restart == "empty":
        own_redis.start()
    else:
        cut_off(here, own_redis.port)
    time.sleep(RECHECK_S * 1.5)
    assert here.storage.backend == "redis"
    said = [r.getMessage() for r in caplog.records]
    assert any("shares its state again" in m for m in said), said
    assert any("opened while Redis was away" in m for m in said), said
    for guard in (here, elsewhere):  # this process, and one that never saw the outage
        with pytest.raises(CircuitOpenError) as raised:
            guard.before_call()
        assert "connection refused" in str(raised.value)
    assert not any("closed" in m for m in said), said


def test_an_opening_closed_elsewhere_before_redis_went_away_is_not_revived(
    own_redis: ThrowawayRedis,
) -> None:
    """Only an opening seen while Redis was away is written back, never an older one."""
    prefix = f"rejoin-{uuid.uuid4().hex}"
    here, elsewhere = guard_on(own_redis, prefix), guard_on(own_redis, prefix)
    for _ in range(2):
        here.record_failure(here.before_call(), outage())  # opened here, through Redis
    elsewhere.reset()  # an operator (or a probe) closed it elsewhere
    cut_off(here, 1)
    assert here.state == "open"  # its memory, which Redis can no longer correct
    assert here.storage.backend == "memory"
    cut_off(here, own_redis.port)
    time.sleep(RECHECK_S * 1.5)
    assert here.storage.backend == "redis"
    here.record_success(here.before_call())  # closed, as Redis says
    assert elsewhere.state == "closed"
