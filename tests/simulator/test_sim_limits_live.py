"""Rate limits like the real API: headers on every answer, the charge, live limit changes, stats."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from typing import Any

import openai
import pytest

from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.tokens import count_message_tokens

USER = [{"role": "user", "content": "hello"}]
SIX = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
)
SLOW = 0.01  # a minute lasts 6000 s: no refill worth counting during a test


def _seconds(text: str) -> float:
    """The API's duration format (`1h2m3s`, `1.5s`, `12ms`) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"([\d.]+)(ms|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return sum(float(n) * units[u] for n, u in parts)


def _raw(sim: Simulator, **kwargs: Any) -> Any:
    return sim.client().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=USER, **kwargs
    )


def _limits(headers: Any) -> dict[str, str]:
    return {name: headers[name] for name in SIX}


def _refused(sim: Simulator, **kwargs: Any) -> openai.RateLimitError:
    with pytest.raises(openai.RateLimitError) as info:
        _raw(sim, **kwargs)
    return info.value


def test_every_answer_carries_the_six_headers_with_the_configured_limits() -> None:
    with Simulator(rpm=2, tpm=5000, time_scale=SLOW) as sim:
        # A 400 before any request was charged reports the key's real (full) buckets.
        with pytest.raises(openai.BadRequestError) as bad:
            _raw(sim, max_tokens=10**6)
        assert _limits(bad.value.response.headers) == {
            "x-ratelimit-limit-requests": "2",
            "x-ratelimit-limit-tokens": "5000",
            "x-ratelimit-remaining-requests": "2",
            "x-ratelimit-remaining-tokens": "5000",
            "x-ratelimit-reset-requests": "0s",
            "x-ratelimit-reset-tokens": "0s",
        }
        ok = _limits(_raw(sim, max_tokens=100).headers)
        assert ok["x-ratelimit-remaining-requests"] == "1"
        _raw(sim, max_tokens=100)
        refused = _refused(sim, max_tokens=100).response.headers
        assert _limits(refused)["x-ratelimit-remaining-requests"] == "0"
        assert "retry-after" in refused


def test_the_refill_rate_follows_from_limit_remaining_and_reset() -> None:
    """(limit - remaining) / reset is the bucket's refill rate, limit per scaled minute."""
    with Simulator(rpm=600, tpm=60_000, time_scale=SLOW) as sim:
        for _ in range(5):
            headers = _raw(sim, max_tokens=50).headers
        for kind, limit in (("requests", 600), ("tokens", 60_000)):
            used = limit - int(headers[f"x-ratelimit-remaining-{kind}"])
            reset = _seconds(headers[f"x-ratelimit-reset-{kind}"])
            assert reset > 0
            # `remaining` is the level rounded down, so the units short of full are in
            # (used - 1, used]: the rate is bounded, whatever refilled while requests went out.
            rate = limit / 60 * SLOW
            assert (used - 1) / reset <= rate * 1.01 and rate <= used / reset * 1.01


def test_tokens_charged_are_prompt_plus_n_times_the_cap_or_what_was_generated() -> None:
    prompt = count_message_tokens(USER, "gpt-4o-mini")
    with Simulator(tpm=1000, time_scale=SLOW) as sim:  # refills 1 token in 6 s
        headers = _raw(sim, max_completion_tokens=40, n=3).headers
        assert int(headers["x-ratelimit-remaining-tokens"]) == 1000 - prompt - 3 * 40
        uncapped = _raw(sim)
        generated = uncapped.parse().usage.completion_tokens
        after = int(uncapped.headers["x-ratelimit-remaining-tokens"])
        assert after - (1000 - prompt - 3 * 40 - prompt - generated) in (0, 1)


def test_configure_changes_the_limits_live_and_keeps_what_was_used() -> None:
    with Simulator(rpm=60, time_scale=SLOW) as sim:
        for _ in range(10):
            _raw(sim)
        sim.configure(rpm=30)  # the python API, no restart
        headers = _raw(sim).headers
        assert headers["x-ratelimit-limit-requests"] == "30"
        assert headers["x-ratelimit-remaining-requests"] == "19"  # 10 used + this one

        body = json.dumps({"rpm": 11}).encode()  # the admin endpoint, as a subprocess is driven
        request = urllib.request.Request(
            sim.url + "/_simulator/configure", data=body, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert json.loads(answer.read())["rpm"] == 11
        err = _refused(sim)
        assert err.type == "requests" and "Limit 11, Used 11" in err.message
        assert err.response.headers["x-ratelimit-limit-requests"] == "11"

        sim.configure(rpm=12, time_scale=60.0)  # a faster minute: one request back in 5 s/60
        time.sleep(0.12)
        assert _raw(sim).headers["x-ratelimit-limit-requests"] == "12"
        sim.configure(rpm=None)
        assert _raw(sim).headers["x-ratelimit-reset-requests"] == "0s"


def test_a_raised_limit_is_usable_at_once() -> None:
    with Simulator(rpm=2, time_scale=SLOW) as sim:
        _raw(sim)
        _raw(sim)
        assert _refused(sim).type == "requests"
        sim.configure(rpm=5)
        remaining = [_raw(sim).headers["x-ratelimit-remaining-requests"] for _ in range(3)]
        assert remaining == ["2", "1", "0"]


def test_stats_count_429s_by_reason_and_time_the_admitted_requests() -> None:
    with Simulator(rpm=3, tpm=1000, time_scale=SLOW) as sim:
        before = time.time()
        _raw(sim, max_tokens=100)
        _raw(sim, max_tokens=100)
        assert _refused(sim, max_tokens=900).type == "tokens"
        assert "Request too large" in _refused(sim, max_tokens=2000).message
        _raw(sim, max_tokens=100)
        assert _refused(sim, max_tokens=100).type == "requests"
        after = time.time()
        stats = sim.stats()
        assert stats.rate_limited == {"tokens": 1, "too-large": 1, "requests": 1}
        assert stats.by_fault == {"rate-limit": 3} and stats.by_status == {200: 3, 429: 3}
        assert stats.admitted == 3
        first, last = stats.first_admitted_at, stats.last_admitted_at
        assert first is not None and last is not None and before <= first < last <= after
        assert stats.admitted_per_s == pytest.approx(2 / (last - first))
        sim.reset()
        cleared = sim.stats()
        assert cleared.admitted == 0 and cleared.first_admitted_at is None
        assert cleared.rate_limited == {} and cleared.admitted_per_s is None


def test_stats_of_a_subprocess_simulator_carry_the_new_fields() -> None:
    with Simulator(rpm=1, time_scale=SLOW, subprocess=True) as sim:
        _raw(sim)
        assert _refused(sim).type == "requests"
        sim.configure(rpm=2)
        _raw(sim)
        stats = sim.stats()
        assert stats.rate_limited == {"requests": 1} and stats.admitted == 2
        assert stats.admitted_per_s is not None and stats.admitted_per_s > 0
