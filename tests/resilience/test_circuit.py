"""The circuit guard in one process: opening, failing fast, one probe, closing, listeners."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import threading
import time
from collections.abc import Iterator

import pytest
from resilience_helpers import FakeClock, connection_error

from prefect_openai_chat.errors import CircuitOpenError
from prefect_openai_chat.resilience import (
    CircuitEvent,
    CircuitGuard,
    Permit,
    add_circuit_listener,
    circuit_key,
    get_circuit_guard,
    remove_circuit_listener,
)


@pytest.fixture
def events() -> Iterator[list[CircuitEvent]]:
    seen: list[CircuitEvent] = []
    add_circuit_listener(seen.append)
    yield seen
    remove_circuit_listener(seen.append)


def trip(guard: CircuitGuard, n: int) -> None:
    for _ in range(n):
        guard.record_failure(guard.before_call(), connection_error())


def test_opens_after_fail_max_outage_errors(
    clock: FakeClock, unique_key: str, events: list[CircuitEvent]
) -> None:
    guard = CircuitGuard(unique_key, fail_max=3, reset_timeout_s=30.0, clock=clock)
    trip(guard, 2)
    assert guard.state == "closed"
    trip(guard, 1)
    assert guard.state == "open"
    with pytest.raises(CircuitOpenError) as info:
        guard.before_call()
    assert info.value.key == unique_key
    assert info.value.retry_at == clock.now + 30.0
    assert "APIConnectionError" in (info.value.last_error or "")
    assert unique_key in str(info.value) and "next probe" in str(info.value)
    mine = [e for e in events if e.key == unique_key]
    assert [e.name for e in mine] == ["opened"] and mine[0].observed is False
    assert "APIConnectionError" in (mine[0].last_error or "")


def test_fails_fast_in_well_under_a_millisecond(clock: FakeClock, unique_key: str) -> None:
    guard = CircuitGuard(unique_key, fail_max=1, clock=clock)
    trip(guard, 1)
    timings = []
    for _ in range(2000):
        start = time.perf_counter()
        with contextlib.suppress(CircuitOpenError):
            guard.before_call()
        timings.append(time.perf_counter() - start)
    assert statistics.median(timings) < 0.0001
    assert max(sorted(timings)[:-20]) < 0.001


def test_client_errors_neither_count_nor_reset_the_streak(
    clock: FakeClock, unique_key: str
) -> None:
    guard = CircuitGuard(unique_key, fail_max=3, clock=clock)
    trip(guard, 2)
    for _ in range(10):  # 400s, 404s...: ignored
        guard.record_ignored(guard.before_call())
    assert guard.storage.counter == 2
    trip(guard, 1)
    assert guard.state == "open"


def test_a_success_resets_the_streak(clock: FakeClock, unique_key: str) -> None:
    guard = CircuitGuard(unique_key, fail_max=3, clock=clock)
    trip(guard, 2)
    guard.record_success(guard.before_call())
    trip(guard, 2)
    assert guard.state == "closed"


def test_half_open_probe_closes_or_reopens(
    clock: FakeClock, unique_key: str, events: list[CircuitEvent]
) -> None:
    guard = CircuitGuard(unique_key, fail_max=1, reset_timeout_s=10.0, clock=clock)
    trip(guard, 1)
    clock.advance(10.0)
    probe = guard.before_call()
    assert probe.probe and guard.state == "half-open"
    guard.record_failure(probe, connection_error())  # the probe fails: open again, new timeout
    assert guard.state == "open"
    with pytest.raises(CircuitOpenError) as info:
        guard.before_call()
    assert info.value.retry_at == clock.now + 10.0
    clock.advance(10.0)
    probe = guard.before_call()
    guard.record_success(probe)
    assert guard.state == "closed"
    assert guard.before_call() == Permit(unique_key)
    names = [e.name for e in events if e.key == unique_key]
    assert names == ["opened", "half-opened", "opened", "half-opened", "closed"]


def test_probe_with_a_client_error_lets_the_next_caller_probe(
    clock: FakeClock, unique_key: str
) -> None:
    guard = CircuitGuard(unique_key, fail_max=1, reset_timeout_s=1.0, clock=clock)
    trip(guard, 1)
    clock.advance(1.0)
    probe = guard.before_call()
    with pytest.raises(CircuitOpenError):
        guard.before_call()  # the probe is in flight
    guard.record_ignored(probe)  # it got a 400: says nothing about the outage
    assert guard.state == "half-open"
    assert guard.before_call().probe


def test_success_threshold_needs_that_many_probes(clock: FakeClock, unique_key: str) -> None:
    guard = CircuitGuard(
        unique_key, fail_max=1, reset_timeout_s=1.0, success_threshold=2, clock=clock
    )
    trip(guard, 1)
    clock.advance(1.0)
    guard.record_success(guard.before_call())
    assert guard.state == "half-open"
    guard.record_success(guard.before_call())
    assert guard.state == "closed"


def test_one_probe_among_50_threads(clock: FakeClock, unique_key: str) -> None:
    guard = CircuitGuard(unique_key, fail_max=1, reset_timeout_s=5.0, clock=clock)
    trip(guard, 1)
    clock.advance(5.0)
    barrier = threading.Barrier(50)
    permits: list[Permit] = []
    refused: list[CircuitOpenError] = []

    def caller() -> None:
        barrier.wait()
        try:
            permits.append(guard.before_call())
        except CircuitOpenError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(permits) == 1 and permits[0].probe and len(refused) == 49
    guard.record_success(permits[0])
    assert guard.state == "closed"


async def test_one_probe_among_50_asyncio_tasks(clock: FakeClock, unique_key: str) -> None:
    guard = CircuitGuard(unique_key, fail_max=1, reset_timeout_s=5.0, clock=clock)
    trip(guard, 1)
    clock.advance(5.0)
    sent = 0

    async def call() -> str:
        nonlocal sent
        permit = guard.before_call()
        sent += 1
        await asyncio.sleep(0.01)  # the probe is in flight while the others arrive
        guard.record_success(permit)
        return "ok"

    results = await asyncio.gather(*(call() for _ in range(50)), return_exceptions=True)
    assert sent == 1
    assert results.count("ok") == 1
    assert sum(isinstance(r, CircuitOpenError) for r in results) == 49
    assert guard.state == "closed"
    assert await asyncio.gather(*(call() for _ in range(50))) == ["ok"] * 50


def test_a_lost_probe_expires(clock: FakeClock, unique_key: str) -> None:
    guard = CircuitGuard(
        unique_key, fail_max=1, reset_timeout_s=1.0, probe_lease_s=0.05, clock=clock
    )
    trip(guard, 1)
    clock.advance(1.0)
    assert guard.before_call().probe  # never reported (the task was killed)
    time.sleep(0.06)
    assert guard.before_call().probe


def test_listener_errors_never_break_a_call(clock: FakeClock, unique_key: str) -> None:
    def broken(event: CircuitEvent) -> None:
        raise RuntimeError("listener bug")

    add_circuit_listener(broken)
    try:
        guard = CircuitGuard(unique_key, fail_max=1, clock=clock)
        trip(guard, 1)
        assert guard.state == "open"
    finally:
        remove_circuit_listener(broken)


def test_circuit_key_and_registry() -> None:
    assert circuit_key("HTTP://Api.OpenAI.com/v1/", "gpt-4o") == "http://api.openai.com/v1|gpt-4o"
    assert circuit_key("https://u:secret@host:8443/v1?k=1", "m") == "https://host:8443/v1|m"
    a = get_circuit_guard("registry-test|m", fail_max=7)
    assert get_circuit_guard("registry-test|m", fail_max=7) is a and a.fail_max == 7
    # Another block's thresholds: its own guard; neither block changes the other's.
    b = get_circuit_guard("registry-test|m", fail_max=3, reset_timeout_s=9.0)
    assert b is not a and (b.fail_max, b.reset_timeout_s) == (3, 9.0)
    assert a.fail_max == a.breaker.fail_max == 7 and a.reset_timeout_s == 30.0


def test_no_secret_in_last_error(clock: FakeClock, unique_key: str) -> None:
    guard = CircuitGuard(unique_key, fail_max=1, clock=clock)
    guard.record_failure(guard.before_call(), ConnectionError("key sk-proj-abcdef123456 refused"))
    assert "sk-proj" not in (guard.last_error or "") and "***" in (guard.last_error or "")
