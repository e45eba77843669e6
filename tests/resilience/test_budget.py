"""Retry budget: at most `ratio` of requests over a sliding window, plus a small floor."""

from __future__ import annotations

import threading

from resilience_helpers import FakeClock

from prefect_openai_chat.resilience import RetryBudget, get_retry_budget


def test_retries_are_a_share_of_requests_plus_a_floor(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.2, window_s=10.0, min_retries_per_window=3, clock=clock)
    for _ in range(100):
        budget.record_request()
    granted = sum(budget.try_acquire_retry() for _ in range(100))
    assert granted == 3 + 20
    assert budget.snapshot() == {"requests": 100, "retries": 23, "remaining": 0.0}


def test_floor_lets_a_handful_of_calls_retry_without_traffic(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.2, min_retries_per_window=10, clock=clock)
    budget.record_request()
    assert sum(budget.try_acquire_retry() for _ in range(50)) == 10


def test_window_slides(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.5, window_s=10.0, min_retries_per_window=0, clock=clock)
    for _ in range(10):
        budget.record_request()
    assert sum(budget.try_acquire_retry() for _ in range(10)) == 5
    clock.advance(5.0)  # half the window later: still the same requests and retries
    assert budget.try_acquire_retry() is False
    clock.advance(5.5)  # the old buckets slid out: no requests, no allowance
    assert budget.snapshot()["requests"] == 0
    assert budget.try_acquire_retry() is False
    for _ in range(4):
        budget.record_request()
    assert sum(budget.try_acquire_retry() for _ in range(4)) == 2


def test_memory_is_constant_per_key(clock: FakeClock) -> None:
    budget = RetryBudget(clock=clock)
    for i in range(20_000):
        clock.advance(0.01)
        budget.record_request()
        if i % 3 == 0:
            budget.try_acquire_retry()
    assert len(budget._requests) == len(budget._retries) == 10


def test_thread_safe_never_grants_more_than_allowed(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.1, min_retries_per_window=5, clock=clock)
    for _ in range(1000):
        budget.record_request()
    granted: list[bool] = []
    barrier = threading.Barrier(16)

    def worker() -> None:
        barrier.wait()
        results = [budget.try_acquire_retry() for _ in range(50)]
        granted.extend(results)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 105


def test_registry_returns_one_budget_per_key_and_settings() -> None:
    a = get_retry_budget("budget-registry-test", ratio=0.5)
    assert get_retry_budget("budget-registry-test", ratio=0.5) is a and a.ratio == 0.5
    other = get_retry_budget("budget-registry-test", ratio=0.1)  # another block's setting
    assert other is not a and (a.ratio, other.ratio) == (0.5, 0.1)  # neither changes the other
    assert get_retry_budget("budget-registry-test-2", ratio=0.5) is not a
