"""Client-side limiter: buckets, a shared pause after a 429, and the rate-limit headers."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from resilience_helpers import FakeClock, RecordingSleep

from prefect_openai_chat.resilience import RateLimiter, parse_duration, read_limits
from prefect_openai_chat.resilience.limiter import (
    BURST_PACE,
    MAX_RESERVATIONS,
    PACING,
    wait_for_slot,
)


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
    limiter = RateLimiter(rpm=60, clock=clock, sleep=sleep, learn=False)
    waits = [await limiter.acquire() for _ in range(62)]
    assert waits[:60] == [0.0] * 60  # a full bucket lets a burst through
    assert waits[60:] == pytest.approx([1.0, 2.0])  # then one per second, queued
    assert sleep.delays == pytest.approx([1.0, 2.0])


async def test_token_bucket(clock: FakeClock) -> None:
    limiter = RateLimiter(tpm=6000, clock=clock, sleep=RecordingSleep(), learn=False)
    assert await limiter.acquire(5000) == 0.0
    assert await limiter.acquire(2000) == pytest.approx(10.0)  # 1000 tokens short at 100/s
    clock.advance(30.0)
    assert await limiter.acquire(100) == 0.0


async def test_throttle_pauses_every_concurrent_caller(clock: FakeClock) -> None:
    sleep = RecordingSleep()
    limiter = RateLimiter(clock=clock, sleep=sleep)
    limiter.observe({})  # a server that sends no rate-limit headers: nothing to learn
    limiter.throttle(4.0)  # one caller got a 429 with Retry-After: 4
    waits = await asyncio.gather(*(limiter.acquire() for _ in range(10)))
    assert waits == [4.0] * 10
    clock.advance(4.0)
    assert await limiter.acquire() == 0.0


def headers(kind: str, limit: int, remaining: int, reset: str) -> dict[str, str]:
    return {
        f"x-ratelimit-limit-{kind}": str(limit),
        f"x-ratelimit-remaining-{kind}": str(remaining),
        f"x-ratelimit-reset-{kind}": reset,
    }


def test_learns_capacity_and_refill_rate_from_the_headers(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    assert limiter.learned == {"requests": None, "tokens": None}
    # 10 of 50 spent, full again in 200 ms: 50 per second, whatever a "minute" is. But
    # `remaining` is rounded down (40.6 left shows as 40): the rate is only bounded,
    # 9 / 0.2005 < rate <= 10 / 0.1995, and the limiter goes by the lower bound.
    limiter.observe({**headers("requests", 50, 40, "200ms"), **headers("tokens", 9000, 6000, "1s")})
    assert limiter.learned["requests"] == pytest.approx((50.0, 9 / 0.2005))
    assert limiter.learned["tokens"] == pytest.approx((9000.0, 3000.0), rel=0.01)
    # 45.99 left shows as 45, full in 80 ms: a tighter lower bound, 4 / 0.0805.
    limiter.observe(headers("requests", 50, 45, "80ms"))
    assert limiter.learned["requests"] == pytest.approx((50.0, 50.0), rel=0.01)
    assert limiter.learned["requests"][1] < 50.0  # never above what the server allows
    # A full bucket's reading (one unit spent) bounds nothing from below: nothing changes.
    limiter.observe(headers("requests", 50, 49, "15ms"))
    assert limiter.learned["requests"] == pytest.approx((50.0, 4 / 0.0805))
    assert limiter.limits_tokens
    assert "50 requests" in limiter.describe()


async def test_bucket_follows_what_the_server_says_remains(clock: FakeClock) -> None:
    sleep = RecordingSleep()
    limiter = RateLimiter(clock=clock, sleep=sleep)
    limiter.observe(headers("requests", 50, 0, "1s"))  # others spent it all: 50 per second
    # one unit of headroom, paced at 99% of the lower bound: the next request in about 2/49 s
    rate = 49 / 1.0005 * PACING["requests"]
    assert await limiter.acquire() == pytest.approx(2 / rate, rel=0.01)
    clock.advance(1.0)
    assert await limiter.acquire() == 0.0


def test_relearns_when_the_limit_changes(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    limiter.observe(headers("requests", 50, 40, "180ms"))
    assert limiter.learned["requests"] == pytest.approx((50.0, 50.0), rel=0.01)
    limiter.observe(headers("requests", 20, 10, "450ms"))  # the tier changed: 20 per second
    assert limiter.learned["requests"] == pytest.approx((20.0, 20.0), rel=0.01)
    assert limiter.effective("requests") == pytest.approx(
        (20.0, 20.0 * PACING["requests"]), rel=0.01
    )


def test_configured_caps_bound_what_is_learned(clock: FakeClock) -> None:
    limiter = RateLimiter(rpm=600, clock=clock)
    assert limiter.effective("requests") == pytest.approx((600.0, 10.0))
    limiter.observe(headers("requests", 5000, 4900, "1.2s"))
    assert limiter.effective("requests") == pytest.approx((600.0, 10.0))  # the cap stays
    limiter.observe(headers("requests", 100, 90, "5.4s"))
    assert limiter.effective("requests") == pytest.approx(
        (100.0, 10 / 6 * PACING["requests"]), rel=0.01
    )


async def test_until_the_first_headers_one_call_goes_alone() -> None:
    limiter = RateLimiter()
    order: list[str] = []

    async def call(name: str) -> None:
        await limiter.acquire()
        order.append(name)
        if name == "first":
            await asyncio.sleep(0.05)
            order.append("headers")
            limiter.observe(headers("requests", 50, 49, "20ms"))

    await asyncio.gather(call("first"), call("second"), call("third"))
    assert order[:2] == ["first", "headers"]  # the others waited for what the probe learned


def test_settle_charges_what_a_call_used_beyond_its_reservation(clock: FakeClock) -> None:
    limiter = RateLimiter(tpm=6000, clock=clock)
    assert limiter.reserve(1000) == 0.0
    limiter.settle(reserved=1000, used=5500)  # no room reserved: the answer was long
    assert limiter.reserve(1000) == pytest.approx(5.0)  # 500 short at 100 tokens/s


def test_read_limits_skips_malformed_values() -> None:
    assert (
        read_limits({"x-ratelimit-limit-requests": "many", "x-ratelimit-remaining-requests": "1"})
        == {}
    )
    reading = read_limits(headers("tokens", 100, 100, "0s"))["tokens"]
    assert (reading.limit, reading.remaining, reading.rate) == (100.0, 100.0, None)


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="rpm must be a positive number"):
        RateLimiter(rpm=0)


class StallingSleep(RecordingSleep):
    """A sleep whose first `stalls` wake-ups come `late_s` after the time asked."""

    def __init__(self, clock: FakeClock, stalls: int, late_s: float) -> None:
        super().__init__(clock)
        self.stalls, self.late_s = stalls, late_s

    async def __call__(self, seconds: float) -> None:
        await super().__call__(seconds)
        if self.stalls > 0:
            self.stalls -= 1
            self.clock.advance(self.late_s)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("stalls", "late_s", "reservations"),
    [
        (0, 0.0, 1),  # on time: one reservation
        (1, 0.2, 1),  # 0.2 s late, within LATE_S: sent
        (1, 2.0, 2),  # a stalled loop: the moment is let go, a new one taken
        (9, 2.0, MAX_RESERVATIONS),  # a loop that keeps stalling: sent after the last try
    ],
)
async def test_a_call_that_wakes_late_queues_again(
    clock: FakeClock, stalls: int, late_s: float, reservations: int
) -> None:
    asked: list[float] = []

    async def reserve() -> float:
        asked.append(clock())
        return 0.5

    sleep = StallingSleep(clock, stalls, late_s)
    waited = await wait_for_slot(reserve, slot_s=0.1, sleep=sleep, clock=clock)
    assert len(asked) == reservations
    assert waited == pytest.approx(0.5 * reservations)


async def test_a_cautious_start_spreads_the_first_burst_then_the_bucket_paces(
    clock: FakeClock,
) -> None:
    limiter = RateLimiter(clock=clock, sleep=RecordingSleep())
    assert await limiter.acquire() == 0.0  # the probe, alone
    limiter.observe(headers("requests", 50, 49, "20ms"))
    rate = limiter.effective("requests")[1]  # type: ignore[index]
    waits = [limiter.reserve() for _ in range(60)]
    # the bucket holds 48: they go out spread at BURST_PACE x the rate, not at once
    gap = 1.0 / (BURST_PACE * rate)
    assert waits[:48] == pytest.approx([i * gap for i in range(48)])
    # once the bucket is empty, one per 1 / rate, as before
    spacing = [b - a for a, b in itertools.pairwise(waits[48:])]
    assert spacing == pytest.approx([1.0 / rate] * 11, rel=0.05)
    clock.advance(60.0)  # the bucket is full again later on: no spreading any more
    assert [limiter.reserve() for _ in range(5)] == [0.0] * 5


async def test_the_cautious_start_loses_no_throughput(clock: FakeClock) -> None:
    """100 requests against a bucket of 50 at 50/s: the last one goes when it would have
    without the spreading (the server's bucket drains faster than it refills)."""
    limiter = RateLimiter(clock=clock, sleep=RecordingSleep())
    await limiter.acquire()
    limiter.observe(headers("requests", 50, 49, "20ms"))
    rate = limiter.effective("requests")[1]  # type: ignore[index]
    waits = [limiter.reserve() for _ in range(99)]
    assert waits[-1] == pytest.approx((99 - 48) / rate, rel=0.02)
