"""Issue #10, defects 10 and 11: `ChatResult.http_attempts` counts every HTTP attempt of the
logical call (summary call, re-send after an overflow, fallbacks), and a summarised call
reports the summary call's usage and cost too. Each figure is checked against what the
simulator itself counted."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from defect_support import MESSAGES, MODEL, run_task, sim_model
from registry_support import clear_resilience

from prefect_openai_chat import ChatResult, chat_completion, estimate_cost
from prefect_openai_chat.simulator import Simulator

CHAT = chat_completion.with_options(retry_delay_seconds=0)
SERVER_WINDOW = 1000  # the narrow simulator's real window
BELIEVED_WINDOW = 4000  # what the block thinks: the pre-check passes, the server says 400


def conversation(turns: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "You are a careful support agent."}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"Ticket {i}: the export job {i} failed"
                         f" again at step {i * 3} with a timeout on the warehouse."})  # fmt: skip
        messages.append({"role": "assistant", "content": f"Noted for ticket {i}; retrying"
                         " with a longer timeout and a smaller batch."})  # fmt: skip
    messages.append({"role": "user", "content": "Summarise the open tickets in one line."})
    return messages


LONG = conversation(24)  # about 1,100 prompt tokens


@pytest.fixture(autouse=True)
def _harness(prefect_harness: None) -> None:
    clear_resilience()


@pytest.fixture(scope="module")
def up() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=6) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def narrow() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=8, extra_models={MODEL: SERVER_WINDOW}) as simulator:
        yield simulator


def billed(result: ChatResult, sim: Simulator) -> None:
    """The result reports exactly what the server counted, and its price."""
    stats = sim.stats()
    assert result.http_attempts == stats.requests
    assert result.usage.prompt_tokens == stats.prompt_tokens
    assert result.usage.completion_tokens == stats.completion_tokens
    expected = estimate_cost(MODEL, stats.prompt_tokens, stats.completion_tokens)
    assert result.cost_usd == pytest.approx(expected)


def test_summary_call_is_billed_and_counted(up: Simulator) -> None:
    up.reset()
    model = sim_model(up, context_strategy="summarize", context_window=800)
    _, result = run_task(CHAT, model, LONG)
    assert isinstance(result, ChatResult), repr(result)
    assert up.stats().requests == 2  # the summary, then the call itself
    billed(result, up)


def test_server_overflow_then_summary_counts_all_three_attempts(narrow: Simulator) -> None:
    narrow.reset()
    model = sim_model(narrow, context_strategy="summarize", context_window=BELIEVED_WINDOW)
    _, result = run_task(CHAT, model, LONG)
    assert isinstance(result, ChatResult), repr(result)
    assert narrow.stats().by_status == {400: 1, 200: 2}  # rejected, summary, main
    assert result.http_attempts == 3
    billed(result, narrow)


def test_server_overflow_then_truncate_counts_both_attempts(narrow: Simulator) -> None:
    narrow.reset()
    model = sim_model(narrow, context_strategy="truncate_oldest", context_window=BELIEVED_WINDOW)
    _, result = run_task(CHAT, model, LONG)
    assert isinstance(result, ChatResult), repr(result)
    assert result.http_attempts == 2 == narrow.stats().requests


def test_fallback_attempts_add_to_the_primarys(up: Simulator) -> None:
    up.reset()
    fallback = f"fallback-{uuid.uuid4().hex[:8]}"
    sim_model(up, model="gpt-4o-2024-08-06").save(fallback)
    primary = sim_model(up, max_attempts=3, task_retries=0, fallback_models=[fallback])
    # A script, not the fault header (which the fallback would get too): three 503s, then ok.
    up.configure(script=["503", "503", "503"])
    up.reset()
    try:
        _, result = run_task(CHAT, primary, MESSAGES)
    finally:
        up.configure(script=[])
    assert isinstance(result, ChatResult), repr(result)
    assert result.answered_by == fallback
    assert up.stats().by_status == {503: 3, 200: 1}
    assert result.http_attempts == 4
