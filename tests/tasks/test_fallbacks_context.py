"""Fallbacks, context-window strategies, key rotation and the client-side limiter, through
the real tasks in real Prefect flows against simulators over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from prefect import flow, task
from resilience_support import (
    MESSAGES,
    MODEL,
    clear_resilience,
    counted,
    fast_model,
    sim_model,
    task_run_count,
    unique_name,
)

from prefect_openai_chat import ChatModel, ChatResult, chat_completion, count_message_tokens
from prefect_openai_chat.blocks.assembly import RUNNERS
from prefect_openai_chat.errors import ContextWindowExceededError, CredentialsRejectedError
from prefect_openai_chat.resilience import RateLimiter, get_rate_limiter
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.tokens.context import SUMMARY_PROMPT, fit_messages

SYNC_CHAT = counted(chat_completion)
SERVER_WINDOW = 1000  # the narrow simulator's real window for MODEL
ROOM = 0  # no max_completion_tokens: the simulator fills any limit given and answers 'length'
WINDOW = 800  # what the pre-check tests configure


def conversation(turns: int) -> list[dict[str, str]]:
    """A system message and `turns` user/assistant exchanges (about 40 tokens each)."""
    messages = [{"role": "system", "content": "You are a careful support agent."}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"Ticket {i}: the export job {i} failed"
                         f" again at step {i * 3} with a timeout on the warehouse."})  # fmt: skip
        messages.append({"role": "assistant", "content": f"Noted for ticket {i}; retrying"
                         " with a longer timeout and a smaller batch."})  # fmt: skip
    messages.append({"role": "user", "content": "Summarise the open tickets in one line."})
    return messages


LONG = conversation(24)  # about 1,100 prompt tokens


@pytest.fixture(scope="module")
def up() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=6) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def down() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=7, fault_rates={"503": 1.0}) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def narrow() -> Iterator[Simulator]:
    """A server whose real window for MODEL is smaller than what the blocks believe."""
    with Simulator(profile="ideal", seed=8, extra_models={MODEL: SERVER_WINDOW}) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _fresh(up: Simulator, down: Simulator, narrow: Simulator) -> None:
    for sim in (up, down, narrow):
        sim.reset()
    clear_resilience()


_saved: dict[tuple[str, str], str] = {}


def save(model: ChatModel, prefix: str, reuse: bool = True) -> str:
    """Save `model` under a fresh name (once per module for the same prefix and settings)."""
    slot = (prefix, model.model_dump_json())
    if reuse and slot in _saved:
        return _saved[slot]
    name = unique_name(prefix)
    model.save(name, overwrite=True)
    _saved[slot] = name
    return name


def outcome_of(model: ChatModel | str, messages: list[dict[str, Any]], **params: Any) -> Any:
    """Run one chat_completion in a flow; its result or its exception."""

    @flow
    def one_call() -> Any:
        state = SYNC_CHAT(model, messages, **params, return_state=True)
        return state.result(raise_on_failure=False)

    return one_call()


# --- fallbacks ------------------------------------------------------------------------------


def test_primary_down_answered_by_the_saved_fallback(up: Simulator, down: Simulator) -> None:
    fallback = save(sim_model(up), "fallback-up")
    primary = sim_model(
        down, max_attempts=2, task_retries=0, circuit_failures=2, fallback_models=[fallback]
    )

    @flow
    def two_calls() -> list[ChatResult]:
        return [SYNC_CHAT(primary, MESSAGES), SYNC_CHAT(primary, MESSAGES)]

    first, second = two_calls()
    assert first.answered_by == fallback and first.content
    assert second.answered_by == fallback
    # The first call spent its attempts and opened the circuit; the second sent nothing there.
    assert down.stats().requests == 2
    assert up.stats().requests == 2


def test_static_answer_when_everything_is_down(down: Simulator) -> None:
    other = save(sim_model(down, model="gpt-4o-2024-08-06", max_attempts=2), "fallback-down")
    primary = sim_model(
        down,
        max_attempts=2,
        task_retries=0,
        fallback_models=[other],
        static_fallback="The assistant is unavailable; the record was queued.",
    )
    result = outcome_of(primary, MESSAGES)
    assert isinstance(result, ChatResult)
    assert result.answered_by == "static"
    assert result.content == "The assistant is unavailable; the record was queued."
    assert down.stats().requests == 4  # 2 on the primary, 2 on the fallback
    assert result.http_attempts == 4  # every HTTP attempt of the logical call, fallbacks included


def test_a_400_never_falls_back(up: Simulator, down: Simulator) -> None:
    fallback = save(sim_model(down, model="gpt-4o-2024-08-06", max_attempts=2), "fallback-down")
    primary = sim_model(up, temperature=7.0, fallback_models=[fallback], static_fallback="no")
    error = outcome_of(primary, MESSAGES)
    assert isinstance(error, openai.BadRequestError)
    assert up.stats().requests == 1 and down.stats().requests == 0


# --- context strategies, checked before the call -------------------------------------------


def ctx_model(sim: Simulator, strategy: str, window: int | None, **fields: Any) -> ChatModel:
    return sim_model(
        sim, context_strategy=strategy, context_window=window, task_retries=0, **fields
    )


def test_fail_names_both_numbers_and_sends_nothing(up: Simulator) -> None:
    @flow
    def too_long() -> Any:
        state = SYNC_CHAT(ctx_model(up, "fail", WINDOW), LONG, return_state=True)
        return state.result(raise_on_failure=False), state.state_details.task_run_id

    error, task_run_id = too_long()
    prompt = count_message_tokens(LONG, MODEL)
    assert isinstance(error, ContextWindowExceededError)
    assert (error.prompt_tokens, error.limit) == (prompt, WINDOW)
    assert f"needs {prompt} tokens" in str(error) and f"{WINDOW}-token context window" in str(error)
    assert "truncate_oldest" in str(error)
    assert up.stats().requests == 0
    assert task_run_count(task_run_id) == 1


def test_truncate_oldest_sends_fewer_messages_that_fit(up: Simulator) -> None:
    result = outcome_of(ctx_model(up, "truncate_oldest", WINDOW), LONG)
    expected = fit_messages(LONG, MODEL, ROOM, "truncate_oldest", WINDOW)
    assert isinstance(result, ChatResult)
    assert len(expected) < len(LONG) and expected[0] == LONG[0] and expected[-1] == LONG[-1]
    assert result.usage.prompt_tokens == count_message_tokens(expected, MODEL)
    assert result.usage.prompt_tokens + ROOM <= WINDOW
    assert up.stats().requests == 1


class RecordingClient:
    """A real AsyncOpenAI client whose HTTP client keeps every request body it sends."""

    def __init__(self, sim: Simulator) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.sim = sim

    def build(self) -> openai.AsyncOpenAI:
        async def record(request: Any) -> None:
            self.bodies.append(json.loads(request.content))

        http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [record]})
        return openai.AsyncOpenAI(
            base_url=self.sim.base_url, api_key=self.sim.api_key, max_retries=0, http_client=http
        )


def summarized(sim: Simulator, model: ChatModel) -> tuple[ChatResult, list[dict[str, Any]]]:
    """One call through `RUNNERS.build(model)` inside a task, recording what reached the server."""
    recorder = RecordingClient(sim)

    @task
    async def call() -> ChatResult:
        client = recorder.build()
        try:
            return await RUNNERS.build(model, client=lambda: client).complete(LONG)
        finally:
            await client.close()

    @flow
    async def conversation_flow() -> ChatResult:
        return await call()

    return asyncio.run(conversation_flow()), recorder.bodies


def _check_summary_requests(bodies: list[dict[str, Any]], window: int) -> None:
    summary_request, main_request = bodies[-2:]
    assert summary_request["messages"][0]["content"] == SUMMARY_PROMPT
    notes = [
        m
        for m in main_request["messages"]
        if m["role"] == "system" and m["content"].startswith("Summary of the earlier conversation")
    ]
    assert len(notes) == 1
    assert main_request["messages"][0] == LONG[0] and main_request["messages"][-1] == LONG[-1]
    assert len(main_request["messages"]) < len(LONG)
    assert count_message_tokens(main_request["messages"], MODEL) + ROOM <= window


def test_summarize_condenses_the_dropped_turns(up: Simulator) -> None:
    result = outcome_of(ctx_model(up, "summarize", WINDOW), LONG)
    assert isinstance(result, ChatResult) and result.content
    assert up.stats().requests == 2  # the summary, then the call itself

    up.reset()
    result, bodies = summarized(up, ctx_model(up, "summarize", WINDOW))
    assert len(bodies) == 2 and up.stats().requests == 2
    _check_summary_requests(bodies, WINDOW)


def test_bigger_model_hands_the_call_to_a_fallback_that_fits(up: Simulator) -> None:
    small = save(sim_model(up, model="gpt-4o-2024-08-06", context_window=WINDOW + 100), "too-small")
    big = save(sim_model(up, context_window=100_000), "big-window")
    primary = ctx_model(up, "bigger_model", WINDOW, fallback_models=[small, big])
    result = outcome_of(primary, LONG)
    assert isinstance(result, ChatResult)
    assert result.answered_by == big
    assert result.usage.prompt_tokens == count_message_tokens(LONG, MODEL)
    assert up.stats().requests == 1

    primary = ctx_model(up, "bigger_model", WINDOW, fallback_models=[small])
    error = outcome_of(primary, LONG)
    assert isinstance(error, ContextWindowExceededError) and "fits neither" in str(error)
    assert up.stats().requests == 1


# --- the same strategies when the server says context_length_exceeded anyway ----------------

BELIEVED_WINDOW = 4000  # what the blocks think: the pre-check passes, the server rejects


def test_server_overflow_with_fail(narrow: Simulator) -> None:
    error = outcome_of(ctx_model(narrow, "fail", BELIEVED_WINDOW), LONG)
    prompt = count_message_tokens(LONG, MODEL)
    assert isinstance(error, ContextWindowExceededError)
    assert isinstance(error.__cause__, openai.BadRequestError)
    assert (error.prompt_tokens, error.limit) == (prompt, SERVER_WINDOW)
    assert str(prompt) in str(error) and str(SERVER_WINDOW) in str(error)
    assert narrow.stats().requests == 1


def test_server_overflow_with_truncate_oldest(narrow: Simulator) -> None:
    result = outcome_of(ctx_model(narrow, "truncate_oldest", BELIEVED_WINDOW), LONG)
    assert isinstance(result, ChatResult), result
    assert result.usage.prompt_tokens + ROOM <= SERVER_WINDOW
    assert result.usage.prompt_tokens < count_message_tokens(LONG, MODEL)
    assert narrow.stats().by_status == {400: 1, 200: 1}


def test_server_overflow_with_summarize(narrow: Simulator) -> None:
    result, bodies = summarized(narrow, ctx_model(narrow, "summarize", BELIEVED_WINDOW))
    assert result.content
    assert narrow.stats().by_status == {400: 1, 200: 2}  # rejected, summary, main
    assert len(bodies) == 3
    _check_summary_requests(bodies, SERVER_WINDOW)


def test_server_overflow_with_bigger_model(narrow: Simulator, up: Simulator) -> None:
    big = save(sim_model(up, context_window=100_000), "big-window")
    primary = ctx_model(narrow, "bigger_model", BELIEVED_WINDOW, fallback_models=[big])
    result = outcome_of(primary, LONG)
    assert isinstance(result, ChatResult), result
    assert result.answered_by == big
    assert narrow.stats().by_status == {400: 1} and up.stats().requests == 1


# --- 401: reload the credentials once -------------------------------------------------------


def test_wrong_saved_key_fails_after_one_attempt(up: Simulator) -> None:
    name = save(fast_model(up.base_url, "sk-not-valid-1111"), "bad-key")
    error = outcome_of(name, MESSAGES)
    assert isinstance(error, CredentialsRejectedError)
    assert "1111" not in str(error)
    assert up.stats().by_status == {401: 1}  # reloaded once: same key, so no second attempt


@pytest.mark.slow
def test_401_reloads_the_block_saved_anew_once(up: Simulator) -> None:
    name = save(fast_model(up.base_url, "sk-revoked-2222"), "rotated", reuse=False)

    @flow
    async def rotations() -> tuple[Any, Any]:
        # Rotated to another wrong key while the task ran: 401, reload (changed), 401, fail.
        _, runner = await RUNNERS.assemble(name)  # what the task does when it starts
        await fast_model(up.base_url, "sk-still-wrong-4444").asave(name, overwrite=True)
        try:
            await runner.complete(MESSAGES)
        except CredentialsRejectedError as exc:
            rejected = exc
        requests = up.stats().by_status.copy()
        # Rotated to the right key: 401, reload (changed), 200.
        _, runner = await RUNNERS.assemble(name)
        await fast_model(up.base_url, up.api_key).asave(name, overwrite=True)
        return (rejected, requests), await runner.complete(MESSAGES)

    (rejected, requests), result = asyncio.run(rotations())
    assert isinstance(rejected, CredentialsRejectedError)
    assert "after reloading" in str(rejected) and "4444" not in str(rejected)
    assert requests == {401: 2}
    assert result.http_attempts == 2 and result.content
    assert up.stats().by_status == {401: 3, 200: 1}


def test_401_reload_reads_a_rotated_environment_variable(
    up: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-old-env-5555")
    model = fast_model(up.base_url, "", task_retries=0)
    model.credentials.api_key = None  # the key comes from the environment

    @flow
    async def rotated() -> tuple[list[bool], Any, ChatResult]:
        _, runner = await RUNNERS.assemble(model)
        reload = runner.protection.reload_credentials
        assert reload is not None
        try:
            await runner.complete(MESSAGES)
        except CredentialsRejectedError as exc:
            rejected: Any = exc  # the old key: 401, the reload found the same key
        monkeypatch.setenv("OPENAI_API_KEY", up.api_key)
        changes = [await reload(), await reload()]  # rotated once, then unchanged
        return changes, rejected, await runner.complete(MESSAGES)

    changes, rejected, result = asyncio.run(rotated())
    assert isinstance(rejected, CredentialsRejectedError) and "5555" not in str(rejected)
    assert changes == [True, False]
    assert result.http_attempts == 1 and result.content
    assert up.stats().by_status == {401: 1, 200: 1}


# --- the client-side limiter ----------------------------------------------------------------


def test_requests_per_minute_paces_calls(up: Simulator) -> None:
    rpm = 600  # one request every 0.1 s once the first minute's burst is spent
    model = sim_model(up, requests_per_minute=rpm, task_retries=0)
    limiter = get_rate_limiter(model.rate_limit_key(), rpm=rpm, tpm=None)
    for _ in range(rpm + 1):  # empty the bucket, as a busy night would have: its first
        limiter.reserve()  # minute is then over (BURST_PACE), and calls go at the rate

    @flow
    def paced() -> list[ChatResult]:
        return [SYNC_CHAT(model, MESSAGES) for _ in range(4)]

    start = time.perf_counter()
    results = paced()
    elapsed = time.perf_counter() - start
    assert len(results) == 4 and up.stats().requests == 4
    assert elapsed >= 4 * 60 / rpm * 0.9


async def test_rate_limiter_spaces_requests_by_rpm_and_tpm() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    limiter = RateLimiter(rpm=60, tpm=600, clock=lambda: now[0], sleep=sleep, learn=False)
    waits = [await limiter.acquire(tokens=10) for _ in range(62)]
    assert waits[:60] == [0.0] * 60  # the bucket starts full: one minute's worth
    assert waits[60:] == pytest.approx([1.0, 2.0])  # then one request per second
    limiter.throttle(5.0)  # a 429 pauses every caller
    assert await limiter.acquire() == pytest.approx(5.0)
