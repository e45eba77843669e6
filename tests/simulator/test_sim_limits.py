"""Rate limits (buckets, headers, time_scale) and outage windows (by time, by count, live)."""

from __future__ import annotations

import time

import openai
import pytest

from prefect_openai_chat.simulator import OutageWindow, Simulator
from prefect_openai_chat.simulator.ratelimit import Bucket, RateLimiter, format_duration
from prefect_openai_chat.tokens import count_message_tokens

USER = [{"role": "user", "content": "hello"}]


def _create(sim: Simulator, **kwargs: object) -> object:
    return sim.client().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=USER, **kwargs
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.012, "12ms"),
        (0.0001, "1ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (360.0, "6m0s"),
        (3723.0, "1h2m3s"),
        (0, "0s"),
    ],
)
def test_duration_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_bucket_refills_with_an_injected_clock() -> None:
    now = [0.0]
    limiter = RateLimiter(rpm=2, tpm=None, time_scale=60.0, clock=lambda: now[0])
    assert limiter.check("k", 1).refused is None and limiter.check("k", 1).refused is None
    verdict = limiter.check("k", 1)
    assert verdict.refused == "requests" and verdict.retry_after_s == pytest.approx(0.5)
    now[0] = 0.5
    assert limiter.check("k", 1).refused is None
    assert Bucket(60, 1.0, lambda: 0.0).reset_in() == 0


def test_rpm_limit_gives_429_with_headers() -> None:
    # 3 per real minute: no request comes back during the test, however slow the machine.
    with Simulator(rpm=3, time_scale=1.0) as sim:
        remaining = [_create(sim).headers["x-ratelimit-remaining-requests"] for _ in range(3)]  # type: ignore[attr-defined]
        assert remaining == ["2", "1", "0"]
        with pytest.raises(openai.RateLimitError) as info:
            _create(sim)
        err = info.value
        assert err.code == "rate_limit_exceeded" and err.type == "requests"
        assert "Limit 3, Used 3, Requested 1" in err.message
        retry_ms = int(err.response.headers["retry-after-ms"])
        # one request back every 20 s, less the time the four requests took (the exact
        # refill arithmetic is tested with a fake clock above)
        assert 0 < retry_ms <= 20_000
        assert err.response.headers["x-ratelimit-limit-requests"] == "3"
        assert sim.stats().by_fault == {"rate-limit": 1}
        sim.configure(time_scale=60.0)  # now one back every 1/3 s; what was used stays used
        time.sleep(0.4)
        assert _create(sim)


def test_tpm_charges_prompt_plus_max_tokens() -> None:
    prompt = count_message_tokens(USER, "gpt-4o-mini")
    with Simulator(tpm=1000, time_scale=1.0) as sim:
        raw = _create(sim, max_tokens=100)
        assert int(raw.headers["x-ratelimit-remaining-tokens"]) == 1000 - prompt - 100  # type: ignore[attr-defined]
        assert raw.headers["x-ratelimit-reset-tokens"].endswith("s")  # type: ignore[attr-defined]
        with pytest.raises(openai.RateLimitError) as info:
            _create(sim, max_tokens=900)
        assert info.value.type == "tokens"
        with pytest.raises(openai.RateLimitError, match="Request too large"):
            _create(sim, max_tokens=2000)


def test_unlimited_keys_report_nominal_headers(simulator: Simulator) -> None:
    headers = _create(simulator).headers  # type: ignore[attr-defined]
    assert (
        headers["x-ratelimit-reset-requests"] == "0s"
        and int(headers["x-ratelimit-limit-tokens"]) > 0
    )


def test_outage_by_request_count_with_503() -> None:
    with Simulator(outages=[OutageWindow(from_request=1, to_request=3, mode="503")]) as sim:
        results = []
        for _ in range(4):
            try:
                _create(sim)
                results.append(200)
            except openai.InternalServerError as exc:
                results.append(exc.status_code)
        assert results == [200, 503, 503, 200]
        assert sim.stats().by_fault == {"outage": 2}


def _first_success_after(sim: Simulator, timeout: float = 10.0) -> float:
    """Seconds until a request gets through (connections refused until then)."""
    started = time.monotonic()
    while True:
        try:
            _create(sim)
            return time.monotonic() - started
        except openai.APIConnectionError:
            assert time.monotonic() - started < timeout, "the outage did not end"
            time.sleep(0.05)


def test_outage_by_time_refuses_connections() -> None:
    # The window is timed from the simulator's start (and from each reset), not from the
    # first request: long enough that a slow first request still falls inside it.
    window = 1.0
    before = time.monotonic()
    with Simulator(outages=[OutageWindow(start_s=0.0, end_s=window, mode="refuse")]) as sim:
        with pytest.raises(openai.APIConnectionError):
            _create(sim)
        assert time.monotonic() - before + _first_success_after(sim) >= window
        before = time.monotonic()
        sim.reset()  # the outage clock starts again
        with pytest.raises(openai.APIConnectionError):
            _create(sim)
        assert time.monotonic() - before + _first_success_after(sim) >= window


def test_configure_starts_an_outage_now(fresh_simulator: Simulator) -> None:
    assert _create(fresh_simulator)
    fresh_simulator.configure(outages=[OutageWindow(start_s=0, end_s=None)])
    with pytest.raises(openai.InternalServerError):
        _create(fresh_simulator)
    fresh_simulator.configure(outages=[])
    assert _create(fresh_simulator)
