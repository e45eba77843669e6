"""Client-side limiter: buckets, a shared pause after a 429, and the rate-limit headers."""

from __future__ import annotations

import asyncio

import pytest
from resilience_helpers import FakeClock, RecordingSleep

from prefect_openai_chat.resilience import RateLimiter, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("12ms", 0.012),
        ("1h2m3.5s", 3723.5),
        ("0.5", 0.5),
        ("", None),
        ("soon", None),
        ("5x", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


async def test_request_bucket_spaces_calls_after_the_burst(clock: FakeClock) -> None:
    sleep = RecordingSleep()
    limiter = RateLimiter(rpm=60, clock=clock, sleep=sleep)
    waits = [await limiter.acquire() for _ in range(62)]
    assert waits[:60] == [0.0] * 60  # a full bucket lets a burst through
    assert waits[60:] == pytest.approx([1.0, 2.0])  # then one per second, queued
    assert sleep.delays == pytest.approx([1.0, 2.0])


async def test_token_bucket(clock: FakeClock) -> None:
    limiter = RateLimiter(tpm=6000, clock=clock, sleep=RecordingSleep())
    assert await limiter.acquire(5000) == 0.0
    assert await limiter.acquire(2000) == pytest.approx(10.0)  # 1000 tokens short at 100/s
    clock.advance(30.0)
    assert await limiter.acquire(100) == 0.0


async def test_throttle_pauses_every_concurrent_caller(clock: FakeClock) -> None:
    sleep = RecordingSleep()
    limiter = RateLimiter(clock=clock, sleep=sleep)
    limiter.throttle(4.0)  # one caller got a 429 with Retry-After: 4
    waits = await asyncio.gather(*(limiter.acquire() for _ in range(10)))
    assert waits == [4.0] * 10
    clock.advance(4.0)
    assert await limiter.acquire() == 0.0


def test_headers_pause_at_zero_remaining(clock: FakeClock) -> None:
    limiter = RateLimiter(rpm=100, clock=clock)
    limiter.update_from_headers(
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m30s"}
    )
    assert limiter.paused_for == pytest.approx(90.0)
    limiter.update_from_headers(
        {"x-ratelimit-remaining-tokens": "12", "x-ratelimit-reset-tokens": "6ms"}
    )
    assert limiter.paused_for == pytest.approx(90.0)  # no token bucket, remaining > 0: no change


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="rpm must be a positive number"):
        RateLimiter(rpm=0)
