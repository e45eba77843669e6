"""Issue #10, defect 7: a shared (Redis) circuit must not cost one or two synchronous Redis
round trips per attempt on the event loop. 16 concurrent callers send 160 chat calls through
the simulator over real HTTP; a counting wrapper around the real Redis client shows a few
Redis commands per second per circuit, not two per call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from defect_support import MESSAGES
from registry_support import clear_resilience

from prefect_openai_chat import ChatModel, OpenAICredentials
from prefect_openai_chat.blocks.assembly import RUNNERS
from prefect_openai_chat.simulator import Simulator

pytestmark = pytest.mark.redis

CONCURRENCY, ROUNDS = 16, 10


class CountingRedis:
    """Forwards to a real redis client and counts every command sent through it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.commands: list[tuple[float, str]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.commands.append((time.monotonic(), name))
            return attr(*args, **kwargs)

        return call


@pytest.fixture
def sim() -> Iterator[Simulator]:
    clear_resilience()
    with Simulator(profile="ideal", seed=14) as simulator:
        yield simulator
    clear_resilience()


def test_redis_reads_are_a_few_per_second_not_per_attempt(sim: Simulator, redis_url: str) -> None:
    model = ChatModel(
        credentials=OpenAICredentials(base_url=sim.base_url, api_key=sim.api_key),
        model="gpt-4o-mini-2024-07-18",
        redis_url=redis_url,
    )
    runner = RUNNERS.build(model)
    guard = runner.protection.guard
    assert guard is not None and guard.storage.backend == "redis"
    counting = CountingRedis(guard.storage._client._client)
    guard.storage._client._client = counting

    async def caller() -> int:
        attempts = 0
        for _ in range(ROUNDS):
            attempts += (await runner.complete(MESSAGES)).http_attempts
        return attempts

    async def main() -> tuple[int, float]:
        started = time.monotonic()
        done = await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
        return sum(done), time.monotonic() - started

    try:
        attempts, elapsed = asyncio.run(main())
    finally:
        keys = list(redis.Redis.from_url(redis_url).scan_iter(f"prefect-openai-chat:{runner.key}*"))
        if keys:
            redis.Redis.from_url(redis_url).delete(*keys)
    assert attempts == CONCURRENCY * ROUNDS == sim.stats().requests
    commands = len(counting.commands)
    # At most the state and the failure count once per 0.2 s window, plus the first reads.
    bound = 2 * (elapsed / 0.2 + 2)
    print(f"{attempts} attempts in {elapsed:.2f} s made {commands} Redis commands")
    assert commands <= bound, (commands, bound, elapsed)
    assert commands < attempts / 2  # it was two per attempt
