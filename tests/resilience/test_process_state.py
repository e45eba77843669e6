"""Process-wide state: bounded registries, one object per endpoint, one reset for all."""

from __future__ import annotations

import threading
import uuid

from prefect_openai_chat import reset_process_state
from prefect_openai_chat.resilience import get_circuit_guard, get_rate_limiter, get_retry_budget
from prefect_openai_chat.resilience.circuit import (
    CircuitEvent,
    _emit,
    add_circuit_listener,
    remove_circuit_listener,
)
from prefect_openai_chat.resilience.registry import Registry


def test_a_registry_keeps_the_most_recently_used_keys_only() -> None:
    registry: Registry[list[int]] = Registry("test", size=3)
    first = registry.get("a", list)
    for key in "bcd":
        registry.get(key, list)
    assert len(registry) == 3
    assert registry.get("a", list) is not first  # pushed out by b, c, d: made afresh
    assert registry.get("d", list) is registry.get("d", list)


def test_a_registry_makes_one_object_per_key_across_threads() -> None:
    registry: Registry[object] = Registry("threads")
    barrier = threading.Barrier(16)
    seen: list[object] = []

    def take() -> None:
        barrier.wait()
        seen.append(registry.get("one", object))

    threads = [threading.Thread(target=take) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(item) for item in seen}) == 1


def test_callers_with_the_same_settings_share_the_guard_budget_and_limiter() -> None:
    key = "http://process-state.test/v1|m"
    guard = get_circuit_guard(key, fail_max=5, reset_timeout_s=30.0)
    budget = get_retry_budget(key, ratio=0.2)
    limiter = get_rate_limiter(key + "|acct", rpm=100)
    assert get_circuit_guard(key, reset_timeout_s=30.0, fail_max=5) is guard
    assert get_retry_budget(key, ratio=0.2) is budget
    assert get_rate_limiter(key + "|acct", rpm=100) is limiter


def test_blocks_with_other_settings_never_change_each_others_entries() -> None:
    """Issue 23: 'the last block to call wins its settings' is gone; each block's entry keeps
    the settings it was built with, however the calls interleave."""
    key = "http://process-state-two.test/v1|m"
    strict = get_circuit_guard(key, fail_max=2, reset_timeout_s=5.0)
    lenient = get_circuit_guard(key, fail_max=9, reset_timeout_s=60.0)
    assert get_circuit_guard(key, fail_max=2, reset_timeout_s=5.0) is strict
    assert lenient is not strict
    assert (strict.fail_max, strict.reset_timeout_s) == (2, 5.0)
    assert (lenient.fail_max, lenient.breaker.fail_max, lenient.reset_timeout_s) == (9, 9, 60.0)
    low, high = get_retry_budget(key, ratio=0.1), get_retry_budget(key, ratio=0.9)
    assert get_retry_budget(key, ratio=0.1) is low and (low.ratio, high.ratio) == (0.1, 0.9)
    capped, uncapped = get_rate_limiter(key, rpm=50), get_rate_limiter(key)
    assert get_rate_limiter(key, rpm=50) is capped is not uncapped
    assert capped.describe() == "50 requests (refill 50/min)"
    assert uncapped.describe() == "no limits known"


def test_reset_process_state_forgets_every_guard_budget_and_limiter() -> None:
    key = "http://process-state-reset.test/v1|m"
    guard, budget = get_circuit_guard(key), get_retry_budget(key)
    limiter = get_rate_limiter(key)
    reset_process_state()
    assert get_circuit_guard(key) is not guard
    assert get_retry_budget(key) is not budget
    assert get_rate_limiter(key) is not limiter


def test_listeners_added_and_removed_while_events_are_emitted() -> None:
    """Adding and removing listeners from many threads while events fire loses none."""
    event = CircuitEvent("closed", "listener-test|m", None, 0.0)
    kept: list[CircuitEvent] = []

    def keep(e: CircuitEvent) -> None:
        kept.append(e)

    def churn(n: int) -> None:
        def mine(e: CircuitEvent) -> None: ...

        for _ in range(200):
            add_circuit_listener(mine)
            _emit(event)
            remove_circuit_listener(mine)

    add_circuit_listener(keep)
    try:
        threads = [threading.Thread(target=churn, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        remove_circuit_listener(keep)
    assert len(kept) == 8 * 200  # `keep` saw every event, whatever the others did


def test_remembered_secrets_are_bounded_and_the_ones_in_use_stay_redacted() -> None:
    from prefect_openai_chat import redaction

    run = uuid.uuid4().hex[:6]  # words, not a token the generic patterns would mask anyway
    in_use = f"horse battery staple in use {run}"
    redaction.remember_secret(in_use)
    rotated = [f"horse battery staple {n} {run}" for n in range(redaction.SECRETS_KEPT + 5)]
    for n, secret in enumerate(rotated):
        redaction.remember_secret(secret)
        if n % 50 == 0:
            redaction.remember_secret(in_use)  # read again for a call: kept
    assert len(redaction._secrets) == redaction.SECRETS_KEPT
    assert in_use not in redaction.redact_text(f"key {in_use}")
    assert rotated[-1] not in redaction.redact_text(f"key {rotated[-1]}")
    assert rotated[0] in redaction.redact_text(f"key {rotated[0]}")  # the oldest, forgotten


def test_the_model_table_s_cache_is_bounded() -> None:
    from prefect_openai_chat.tokens.models import model_info

    assert model_info.cache_info().maxsize == 1024
