"""Retry-After is honoured (ms, seconds, HTTP date), capped; otherwise full-jitter backoff."""

from __future__ import annotations

import email.utils
import random

import pytest
from resilience_helpers import api_error, connection_error, status_error
from tenacity import RetryCallState, wait_fixed

from prefect_openai_chat.resilience import (
    parse_retry_after,
    wait_exponential_full_jitter,
    wait_retry_after,
)


def state_for(exc: BaseException, attempt: int = 1) -> RetryCallState:
    state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, None))
    return state


def rate_limited(headers: dict[str, str]) -> BaseException:
    return status_error(429, api_error("rate_limit_exceeded"), headers)


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # ms wins
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after": email.utils.formatdate(NOW + 12, usegmt=True)}, 12.0),
        ({"retry-after": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0),  # past date
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "-5"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=lambda: NOW) == expected


def test_wait_uses_the_header_of_the_last_exception_and_caps_it() -> None:
    wait = wait_retry_after(cap=60.0, fallback=wait_fixed(99), now=lambda: NOW)
    assert wait(state_for(rate_limited({"retry-after-ms": "1500"}))) == 1.5
    assert wait(state_for(rate_limited({"retry-after": "3"}))) == 3.0
    date = email.utils.formatdate(NOW + 20, usegmt=True)
    assert wait(state_for(rate_limited({"retry-after": date}))) == 20.0
    assert wait(state_for(rate_limited({"retry-after": "3600"}))) == 60.0  # capped


def test_wait_falls_back_to_full_jitter_backoff_without_header() -> None:
    random.seed(7)
    wait = wait_retry_after(cap=60.0, fallback=wait_exponential_full_jitter(0.5, 4.0))
    for attempt, window in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        delays = [wait(state_for(connection_error(), attempt)) for _ in range(200)]
        assert min(delays) >= 0.0 and max(delays) <= window
        assert max(delays) > window * 0.8  # jitter spreads over the whole window
        assert min(delays) < window * 0.2


def test_wait_composes_with_tenacity_operators() -> None:
    combined = wait_retry_after(fallback=wait_fixed(1)) + wait_fixed(0.5)
    assert combined(state_for(rate_limited({"retry-after": "2"}))) == 2.5
    assert combined(state_for(status_error(503, api_error(None)))) == 1.5
