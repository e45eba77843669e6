"""Every fault, forced by header, by script and by rate, through the real openai client."""

from __future__ import annotations

import time

import openai
import pytest
from openai import OpenAI

from prefect_openai_chat.simulator import FAULTS, Simulator

USER = [{"role": "user", "content": "hello"}]


def _call(client: OpenAI, fault: str, **kwargs: object) -> object:
    return client.chat.completions.create(
        model="gpt-4o-mini",
        messages=USER,
        extra_headers={"x-simulator-fault": fault},
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("fault", "cls", "status", "code", "type_"),
    [
        ("429", openai.RateLimitError, 429, "rate_limit_exceeded", "requests"),
        ("quota", openai.RateLimitError, 429, "insufficient_quota", "insufficient_quota"),
        ("500", openai.InternalServerError, 500, None, "server_error"),
        ("502", openai.InternalServerError, 502, "502", "cf_bad_gateway"),
        ("502-html", openai.InternalServerError, 502, None, None),
        ("503", openai.InternalServerError, 503, "service_unavailable", "server_error"),
        ("408", openai.APIStatusError, 408, "request_timeout", "timeout"),
        ("409", openai.ConflictError, 409, "conflict", "invalid_request_error"),
        ("stream-error", openai.InternalServerError, 500, None, "server_error"),
    ],
)
def test_http_faults_map_to_openai_exceptions(
    fresh_simulator: Simulator,
    client: OpenAI,
    fault: str,
    cls: type[openai.APIStatusError],
    status: int,
    code: str | None,
    type_: str | None,
) -> None:
    with pytest.raises(cls) as info:
        _call(client, fault)
    err = info.value
    assert type(err) is cls
    assert (err.status_code, err.code, err.type) == (status, code, type_)
    assert err.request_id and err.request_id.startswith("req_")
    headers = err.response.headers
    assert "x-ratelimit-remaining-requests" in headers
    if fault == "429":
        assert headers["retry-after-ms"] == "1000" and headers["retry-after"] == "1"
    if fault == "502-html":
        assert headers["content-type"].startswith("text/html") and "<html>" in err.response.text
    stats = fresh_simulator.stats()
    assert stats.by_fault == {fault: 1} and stats.by_status == {status: 1}


def test_retry_after_follows_the_setting() -> None:
    with Simulator(retry_after_s=0.25, script=["429"]) as sim:
        with pytest.raises(openai.RateLimitError) as info:
            sim.client().chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
        assert info.value.response.headers["retry-after-ms"] == "250"


def test_reset_is_a_connection_error(fresh_simulator: Simulator, client: OpenAI) -> None:
    with pytest.raises(openai.APIConnectionError) as info:
        _call(client, "reset")
    assert not isinstance(info.value, openai.APITimeoutError)
    assert fresh_simulator.stats().by_fault == {"reset": 1}
    assert _call(client, "ok")  # the server is fine afterwards


@pytest.mark.parametrize("fault", ["hang", "stall"])
def test_hang_lasts_until_the_client_read_timeout(fresh_simulator: Simulator, fault: str) -> None:
    client = fresh_simulator.client(timeout=0.3)
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        _call(client, fault)
    assert 0.25 < time.monotonic() - start < 2.0
    deadline = time.monotonic() + 2
    while fresh_simulator.stats().in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fresh_simulator.stats().in_flight == 0  # the hang ended when the client left


def test_hang_ends_after_hang_s_with_a_reset() -> None:
    with Simulator(hang_s=0.2) as sim:
        start = time.monotonic()
        with pytest.raises(openai.APIConnectionError):
            _call(sim.client(timeout=5), "hang")
        assert time.monotonic() - start < 2


def test_non_stream_cut_drops_the_body(fresh_simulator: Simulator, client: OpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        _call(client, "cut")


def test_unknown_fault_header_is_a_clear_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _call(client, "gremlins")
    assert info.value.param == "x-simulator-fault" and "gremlins" in info.value.message


def test_fault_header_can_be_disabled() -> None:
    with Simulator(allow_fault_header=False) as sim:
        assert _call(sim.client(), "503")


def test_script_then_normal_behaviour() -> None:
    with Simulator(script=["503", "ok", "429", "500,fenced-json"]) as sim:
        client = sim.client()
        outcomes = []
        for _ in range(6):
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
                outcomes.append(200)
            except openai.APIStatusError as exc:
                outcomes.append(exc.status_code)
        assert outcomes == [503, 200, 429, 500, 200, 200]
        sim.reset()
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]


def _statuses(seed: int, n: int = 60) -> list[int]:
    with Simulator(seed=seed, fault_rates={"503": 0.3, "429": 0.2}) as sim:
        client = sim.client()
        out = []
        for _ in range(n):
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
                out.append(200)
            except openai.APIStatusError as exc:
                out.append(exc.status_code)
        stats = sim.stats()
        assert stats.by_status == {s: out.count(s) for s in set(out)}
        return out


def test_fault_rates_are_deterministic_by_seed() -> None:
    first, again, other = _statuses(3), _statuses(3), _statuses(4)
    assert first == again and first != other
    assert 10 <= first.count(503) <= 30 and 4 <= first.count(429) <= 22


def test_a_retry_of_the_same_request_can_succeed() -> None:
    with Simulator(seed=1, fault_rates={"503": 0.5}) as sim:
        client = sim.client()
        results = set()
        for _ in range(20):
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
                results.add("ok")
            except openai.InternalServerError:
                results.add("503")
        assert results == {"ok", "503"}


def test_every_fault_name_is_accepted_in_settings() -> None:
    from prefect_openai_chat.simulator import SimulatorSettings

    settings = SimulatorSettings(fault_rates={name: 1 / len(FAULTS) for name in FAULTS})
    assert set(settings.fault_rates) == set(FAULTS)
    with pytest.raises(ValueError, match="unknown fault"):
        SimulatorSettings(fault_rates={"gremlins": 0.1})
    with pytest.raises(ValueError, match="add up"):
        SimulatorSettings(fault_rates={"503": 0.7, "429": 0.7})
