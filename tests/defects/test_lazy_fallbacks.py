"""Issue #10, defect 12: fallback blocks load only when a fallback is needed, and a missing
one is named with how to fix it. The README's snippet names a block nobody saved: calls
must work while the primary is up."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from defect_support import MESSAGES, run_task, sim_model
from registry_support import clear_resilience

from prefect_openai_chat import ChatResult, chat_completion
from prefect_openai_chat.errors import MissingFallbackError
from prefect_openai_chat.resilience import RetryPolicy
from prefect_openai_chat.simulator import Simulator

CHAT = chat_completion.with_options(retry_delay_seconds=0)


@pytest.fixture(autouse=True)
def _harness(prefect_harness: None) -> None:
    clear_resilience()


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=12) as simulator:
        yield simulator


def test_an_unsaved_fallback_does_not_break_calls_while_the_primary_is_up(sim: Simulator) -> None:
    sim.reset()
    name = f"primary-{uuid.uuid4().hex[:8]}"
    sim_model(sim, fallback_models=["azure-gpt-4o-mini"]).save(name)
    _, result = run_task(CHAT, name, MESSAGES)  # by name, as a deployment would
    assert isinstance(result, ChatResult), repr(result)
    assert result.answered_by == "primary" and sim.stats().requests == 1


def test_a_missing_fallback_that_is_needed_is_named_with_the_fix(sim: Simulator) -> None:
    sim.reset()
    missing = f"never-saved-{uuid.uuid4().hex[:8]}"
    model = sim_model(sim, max_attempts=2, task_retries=1, fallback_models=[missing])
    message, error = run_task(CHAT, model, MESSAGES, extra_headers={"x-simulator-fault": "503"})
    assert isinstance(error, MissingFallbackError), repr(error)
    text = str(error)
    assert repr(missing) in text and f"ChatModel(...).save({missing!r})" in text
    assert "fallback_models" in text and "503" in text  # and why a fallback was needed
    assert missing in message
    assert not RetryPolicy().classify(error).task_retry  # a configuration error: no re-run
    assert sim.stats().requests == 2


def test_a_missing_fallback_is_skipped_for_the_next_one(sim: Simulator) -> None:
    sim.configure(script=["503", "503"])
    sim.reset()
    saved = f"saved-{uuid.uuid4().hex[:8]}"
    sim_model(sim, model="gpt-4o-2024-08-06").save(saved)
    model = sim_model(sim, max_attempts=2, task_retries=0, fallback_models=["gone", saved])
    try:
        _, result = run_task(CHAT, model, MESSAGES)
    finally:
        sim.configure(script=[])
    assert isinstance(result, ChatResult), repr(result)
    assert result.answered_by == saved
