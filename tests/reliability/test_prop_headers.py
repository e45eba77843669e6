"""Properties of the header parsers: `x-ratelimit-*` (`resilience/limit_headers.py`) and
`retry-after` / `retry-after-ms` (`resilience/waits.py`). Whatever a server or a proxy
sends, they never raise and never give a negative, infinite or absurd wait."""

from __future__ import annotations

import asyncio
import math
import time
from email.utils import formatdate

from hypothesis import given
from hypothesis import strategies as st
from tenacity import RetryCallState, wait_fixed

from prefect_openai_chat.resilience.limit_headers import (
    KINDS,
    MAX_RESET_S,
    parse_duration,
    read_limits,
)
from prefect_openai_chat.resilience.limiter import RateLimiter
from prefect_openai_chat.resilience.waits import parse_retry_after, wait_retry_after

NOW = 1_700_000_000.0
NUMBERS = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", " ", "abc", "1e400", "-0", "NaN", "inf", "0x10", "1_000", "٣"]),
)
DURATIONS = st.one_of(
    NUMBERS,
    st.builds(
        lambda parts: "".join(parts),
        st.lists(
            st.tuples(
                st.integers(0, 10**12).map(str) | st.floats(0, 1e6).map(lambda f: f"{f:.3f}"),
                st.sampled_from(["h", "m", "s", "ms", "d", "", "us"]),
            ).map("".join),
            min_size=1,
            max_size=3,
        ),
    ),
    st.sampled_from(["6m0s", "1.5s", "250ms", "0s", "1h2m3s", "-1s", "1s1s", "s", "ms"]),
    st.text(max_size=12),
)
HEADER_VALUES = NUMBERS | DURATIONS
RATE_HEADERS = st.dictionaries(
    st.sampled_from(
        [f"x-ratelimit-{what}-{kind}" for what in ("limit", "remaining", "reset") for kind in KINDS]
    ),
    HEADER_VALUES,
)

WELL_FORMED = st.fixed_dictionaries(
    {
        f"x-ratelimit-{what}-{kind}": (
            DURATIONS if what == "reset" else st.floats(0, 1e12).map(lambda f: f"{f:.0f}")
        )
        for what in ("limit", "remaining", "reset")
        for kind in KINDS
    }
)


@given(DURATIONS)
def test_a_reset_duration_is_none_or_a_sane_number_of_seconds(text: str) -> None:
    seconds = parse_duration(text)
    assert seconds is None or (math.isfinite(seconds) and 0 <= seconds <= MAX_RESET_S)


@given(st.sampled_from([("6m0s", 360.0), ("1.5s", 1.5), ("250ms", 0.25), ("1h2m3s", 3723.0)]))
def test_the_api_s_reset_formats_are_read(case: tuple[str, float]) -> None:
    text, seconds = case
    assert parse_duration(text) == seconds


@given(RATE_HEADERS | WELL_FORMED)
def test_rate_limit_readings_are_finite_and_consistent(headers: dict[str, str]) -> None:
    for reading in read_limits(headers).values():
        assert math.isfinite(reading.limit) and reading.limit > 0
        assert math.isfinite(reading.remaining) and 0 <= reading.remaining <= reading.limit
        assert reading.reset_s is None or 0 <= reading.reset_s <= MAX_RESET_S
        assert reading.rate is None or (math.isfinite(reading.rate) and reading.rate > 0)


@given(st.lists(RATE_HEADERS | WELL_FORMED, min_size=1, max_size=3), st.integers(0, 10**13))
def test_a_limiter_fed_any_headers_never_asks_for_an_absurd_wait(
    readings: list[dict[str, str]], tokens: int
) -> None:
    clock = [0.0]
    limiter = RateLimiter(clock=lambda: clock[0])
    for headers in readings:
        limiter.observe(headers)
        clock[0] += 0.5
    wait = limiter.reserve(tokens)
    # one full refill at the slowest believable rate: 1 unit per MAX_RESET_S, 2 units short
    assert math.isfinite(wait) and 0 <= wait <= 2 * MAX_RESET_S
    assert isinstance(limiter.describe(), str)
    waited = asyncio.run(limiter.acquire(tokens, sleep=_no_sleep, probe=False))
    assert math.isfinite(waited) and waited >= 0


async def _no_sleep(seconds: float) -> None:
    assert seconds >= 0


RETRY_HEADERS = st.dictionaries(
    st.sampled_from(["retry-after", "retry-after-ms", "Retry-After"]),
    NUMBERS
    | st.text(max_size=30)
    | st.integers(-(10**10), 10**11).map(lambda t: formatdate(t, usegmt=True))
    | st.sampled_from(["Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT"]),
)


@given(RETRY_HEADERS)
def test_retry_after_is_none_or_a_finite_non_negative_wait(headers: dict[str, str]) -> None:
    seconds = parse_retry_after(headers, now=lambda: NOW)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


@given(RETRY_HEADERS, st.floats(0, 3600))
def test_the_wait_strategy_stays_within_its_cap(headers: dict[str, str], cap: float) -> None:
    wait = wait_retry_after(cap=cap, fallback=wait_fixed(0.25), now=lambda: NOW)
    state = RetryCallState(None, None, (), {})
    state.set_exception((_Http429, _Http429(headers), None))
    delay = wait(state)
    assert math.isfinite(delay) and 0 <= delay <= max(cap, 0.25)


class _Response:
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers


class _Http429(Exception):
    """An exception that carries a response with headers, as `openai.APIStatusError` does."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__("429")
        self.response = _Response(headers)


def test_the_named_bad_values_give_no_wait() -> None:
    assert parse_retry_after({"retry-after-ms": "-5000"}) is None
    assert parse_retry_after({"retry-after": "abc"}) is None
    assert parse_retry_after({"retry-after-ms": "nan", "retry-after": "2"}) is None
    assert parse_duration("inf") is None and parse_duration("99999999h") is None


def test_a_long_reset_value_is_read_in_linear_time() -> None:
    """A proxy's mangled header of many digits and no unit: once scanned again from each of
    its digits (5,000 digits took 0.86 s; 16 KB, by the square, about 9 s), now milliseconds."""
    started = time.perf_counter()
    for text in ("x" + "0" * 100_000, "1." + "5" * 100_000 + "q", "1h" + "2" * 100_000):
        assert parse_duration(text) is None
    assert time.perf_counter() - started < 1.0
