"""The limiter learns and re-learns real limits from the simulator's headers, over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import openai
import pytest

from prefect_openai_chat.chat import ChatRunner, ChatSettings
from prefect_openai_chat.chat.protection import Protection
from prefect_openai_chat.resilience import AdaptiveConcurrency, RateLimiter
from prefect_openai_chat.simulator import Simulator

MESSAGES = [{"role": "user", "content": "Say hi."}]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    # 30 requests per rate-limit "minute" of one second: no 60-second minute anywhere.
    with Simulator(profile="ideal", rpm=30, tpm=600_000, time_scale=60.0, seed=2) as simulator:
        yield simulator


async def send(runner: ChatRunner, calls: int) -> None:
    await asyncio.gather(*(runner.complete(MESSAGES, max_tokens=200) for _ in range(calls)))


async def test_learns_and_relearns_the_limits_without_any_configured(sim: Simulator) -> None:
    limiter = RateLimiter()
    client = openai.AsyncOpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)
    runner = ChatRunner(
        ChatSettings(model="gpt-4o-mini"),
        lambda: client,
        protection=Protection(limiter=limiter, gate=AdaptiveConcurrency(16)),
    )
    await send(runner, 60)
    requests, tokens = limiter.learned["requests"], limiter.learned["tokens"]
    assert requests is not None and requests == pytest.approx((30.0, 30.0), rel=0.05)
    # 600,000 tokens a second refill in under a millisecond: only bounded from below.
    assert tokens is not None and tokens[0] == 600_000.0 and 0 < tokens[1] <= 600_000 * 1.05
    assert sim.stats().by_status.get(429, 0) <= 3  # paced from the first answer on

    sim.configure(rpm=60)  # the tier changed while the run goes on
    await send(runner, 90)
    requests = limiter.learned["requests"]
    assert requests is not None and requests == pytest.approx((60.0, 60.0), rel=0.05)
    assert sim.stats().by_status.get(200) == 150  # nothing lost, every call answered
    await client.close()
