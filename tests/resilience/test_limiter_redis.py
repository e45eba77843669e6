"""The rate limiter shared through a real Redis: two real processes, and Redis going away."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis_support import ThrowawayRedis, throwaway_redis_server

from prefect_openai_chat.resilience.limiter_redis import SharedRateLimiter
from prefect_openai_chat.simulator import Simulator

pytestmark = pytest.mark.redis

LIMITS = {
    "x-ratelimit-limit-requests": "30",
    "x-ratelimit-remaining-requests": "30",
    "x-ratelimit-reset-requests": "0s",
    "x-ratelimit-limit-tokens": "100000",
    "x-ratelimit-remaining-tokens": "100000",
    "x-ratelimit-reset-tokens": "0s",
}

# One worker process: `calls` completions through the plugin's in-call tier, sharing the limiter.
WORKER = """
import asyncio, json, sys, time
import openai
from prefect_openai_chat.resilience import AdaptiveConcurrency, RateLimiter, RetryPolicy
from prefect_openai_chat.resilience import call_with_retries
from prefect_openai_chat.resilience.limiter_redis import SharedRateLimiter

base_url, api_key, redis_url, prefix, calls = sys.argv[1:6]

async def main():
    if redis_url:
        limiter = SharedRateLimiter("sim|shared|gpt-4o-mini", redis_url, prefix=prefix)
    else:  # the comparison: each worker with a limiter of its own
        limiter = RateLimiter()
    gate = AdaptiveConcurrency(8)
    client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)

    async def one():
        async def attempt(n):
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
            )
            limiter.observe(raw.headers)
            return raw.parse()
        return await call_with_retries(
            attempt, policy=RetryPolicy(), key="sim", limiter=limiter, gate=gate
        )

    started = time.time()
    results = await asyncio.gather(*(one() for _ in range(int(calls))))
    ended = time.time()
    workers = getattr(limiter, "workers", 1)
    print(json.dumps({"ok": len(results), "workers": workers, "span": [started, ended]}))

asyncio.run(main())
"""


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    yield from throwaway_redis_server()


def _two_workers(redis_url: str, prefix: str) -> tuple[list[dict[str, Any]], Any]:
    """Two worker processes, 90 calls each, against one simulator; their outputs and its stats."""
    # 30 requests per (time-scaled) minute of 0.5 s: 60 per second for both workers together.
    with Simulator(profile="ideal", rpm=30, time_scale=120.0, ttft_s=0.02) as sim:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, sim.base_url, sim.api_key, redis_url, prefix, "90"],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
        return outputs, sim.stats()


@pytest.mark.slow
def test_two_processes_share_one_limit(redis_url: str, prefix: str) -> None:
    """Two workers, each free to use the whole limit, together stay within it."""
    outputs, stats = _two_workers(redis_url, prefix)
    _, alone = _two_workers("", prefix)  # the same two, each with a limiter of its own
    assert [o["ok"] for o in outputs] == [90, 90]
    assert max(o["workers"] for o in outputs) == 2
    # 180 requests at 60/s after a full bucket of 30 take 2.5 s, however the work was split.
    elapsed = max(o["span"][1] for o in outputs) - min(o["span"][0] for o in outputs)
    assert elapsed >= 2.5 * 0.9
    assert stats.by_status.get(200) == 180
    # Each alone sends at the whole limit: 50 to 150 refusals in runs on this machine.
    # Shared, usually none, at most a bucket's worth while both are still learning.
    shared, separate = stats.by_status.get(429, 0), alone.by_status.get(429, 0)
    # On a machine too loaded to send at the limit even alone, both are 0: no contrast.
    assert shared < separate or shared == separate == 0, (shared, separate)
    assert shared <= 0.25 * stats.requests, (shared, stats.requests)


async def test_redis_gone_falls_back_to_a_local_share_and_rejoins(
    throwaway_redis: ThrowawayRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="prefect_openai_chat.resilience.limiter")
    limiter = SharedRateLimiter("k|redis-loss|m", throwaway_redis.url, recheck_s=0.2)
    limiter.observe(LIMITS)
    assert await limiter.acquire() == 0.0 and limiter.shared
    throwaway_redis.stop()
    started = time.perf_counter()
    for _ in range(20):
        await limiter.acquire()
    assert time.perf_counter() - started < 3.0  # no hanging on a dead Redis
    assert not limiter.shared and "local 1/1 share" in limiter.describe()
    went_away = [r for r in caplog.records if "does not answer" in r.getMessage()]
    assert len(went_away) == 1  # one warning, not one per call
    throwaway_redis.start()
    await asyncio.sleep(0.3)
    await limiter.acquire()
    assert limiter.shared
    assert any("answers again" in r.getMessage() for r in caplog.records)


async def test_a_worker_that_learned_nothing_uses_what_another_stored(
    redis_url: str, prefix: str
) -> None:
    first = SharedRateLimiter("k|learned|m", redis_url, prefix=prefix)
    first.observe(
        {**LIMITS, "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}
    )
    await first.acquire()  # stores capacity 30 and 30/s; the bucket is empty
    second = SharedRateLimiter("k|learned|m", redis_url, prefix=prefix)
    second.local.observe({})  # a response without headers: nothing learned here
    waited = await second.acquire(sleep=_no_sleep)
    # queued behind the first one's request and one unit of headroom, at 30/s
    assert 0.0 < waited <= 0.2


async def _no_sleep(seconds: float) -> None:
    return None
