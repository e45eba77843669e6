"""Context fitting: truncate_oldest keeps system messages and the newest whole turns."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from prefect_openai_chat.errors import ContextWindowExceededError
from prefect_openai_chat.tokens import count_message_tokens, count_request_tokens
from prefect_openai_chat.tokens.context import ContextFitter, fit_messages, split_for_summary
from prefect_openai_chat.tokens.counting import response_format_tokens

MODEL = "gpt-4o-mini"


def turn(i: int, words: int = 40) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": f"question {i} " + "word " * words},
        {"role": "assistant", "content": f"answer {i} " + "word " * words},
    ]


def conversation(turns: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are terse."}]
    for i in range(turns):
        messages += turn(i)
    messages.append({"role": "user", "content": "And now?"})
    return messages


def test_fitting_input_is_returned_as_copies() -> None:
    messages = conversation(2)
    fitted = fit_messages(messages, MODEL, 100)
    assert fitted == messages
    assert all(a is not b for a, b in zip(fitted, messages, strict=True))


def test_truncate_oldest_keeps_system_and_newest_turns_and_never_mutates() -> None:
    messages = conversation(20)
    before = copy.deepcopy(messages)
    window, completion = 600, 200
    fitted = fit_messages(messages, MODEL, completion, context_window=window)
    assert messages == before
    assert fitted[0] == messages[0]  # the system message stays
    assert fitted[-1] == messages[-1]  # the newest message stays
    assert fitted[1:] == messages[len(messages) - len(fitted) + 1 :]  # a contiguous newest tail
    assert count_message_tokens(fitted, MODEL) + completion <= window
    one_more = [messages[0], *messages[len(messages) - len(fitted) :]]
    assert count_message_tokens(one_more, MODEL) + completion > window  # as many as fit


def test_truncate_never_splits_a_tool_call_from_its_results() -> None:
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "lookup", "arguments": "{}"}},
        ],
    }
    results = [
        {"role": "tool", "tool_call_id": "c1", "content": "result " * 60},
        {"role": "tool", "tool_call_id": "c2", "content": "result " * 60},
    ]
    tail = [{"role": "assistant", "content": "done"}, {"role": "user", "content": "thanks"}]
    messages = [{"role": "system", "content": "sys"}, *turn(0), call, *results, *tail]
    needed = count_message_tokens([messages[0], *tail], MODEL)
    # room for the tail and one tool result, but not the whole tool exchange
    window = needed + count_message_tokens([results[1]], MODEL) + 10 + 50
    fitted = fit_messages(messages, MODEL, 50, context_window=window)
    assert fitted == [messages[0], *tail]
    roles = [m["role"] for m in fit_messages(messages, MODEL, 50, context_window=10_000)]
    assert roles.count("tool") == 2


def test_fail_names_both_numbers() -> None:
    messages = conversation(20)
    prompt = count_message_tokens(messages, MODEL)
    with pytest.raises(ContextWindowExceededError) as info:
        fit_messages(messages, MODEL, 300, strategy="fail", context_window=1000)
    assert info.value.prompt_tokens == prompt and info.value.limit == 1000
    assert f"{prompt} tokens plus 300" in str(info.value) and "1000-token" in str(info.value)


def test_model_table_window_is_used_by_default() -> None:
    big = [{"role": "user", "content": "word " * 9000}]
    with pytest.raises(ContextWindowExceededError, match="8192-token context window of 'gpt-4'"):
        fit_messages(big, "gpt-4", 500, strategy="fail")


def test_truncate_fails_clearly_when_even_the_newest_turn_does_not_fit() -> None:
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "word " * 500}]
    with pytest.raises(ContextWindowExceededError, match="newest turn do not fit"):
        fit_messages(messages, MODEL, 50, context_window=200)


def test_strategies_that_need_the_runner_are_refused_with_a_hint() -> None:
    with pytest.raises(ValueError, match="split_for_summary"):
        fit_messages(conversation(1), MODEL, 10, strategy="summarize")
    with pytest.raises(ValueError, match="unknown context strategy 'shrink'"):
        fit_messages(conversation(1), MODEL, 10, strategy="shrink")


def test_split_for_summary_leaves_room_for_the_summary() -> None:
    messages = conversation(20)
    kept, dropped = split_for_summary(messages, MODEL, 200, summary_tokens=150, context_window=800)
    assert kept[0] == messages[0] and kept[-1] == messages[-1]
    assert count_message_tokens(kept, MODEL) + 200 + 150 <= 800
    assert dropped == messages[1 : len(messages) - len(kept) + 1]  # the older turns, in order
    assert split_for_summary(conversation(1), MODEL, 10) == (conversation(1), [])


async def test_a_json_schema_format_takes_room_from_the_messages() -> None:
    """The schema of a `json_schema` response format is part of the prompt the API bills:
    a request that fits without it overflows with it, and truncation leaves it room."""
    schema = {
        "type": "object",
        "properties": {
            f"field_{i}": {"type": "string", "description": "word " * 20} for i in range(8)
        },
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "Wide", "schema": schema}}
    messages = conversation(20)
    plain = {"model": MODEL, "messages": messages, "max_completion_tokens": 100}
    window = count_message_tokens(messages, MODEL) + 150  # fits, with room to spare
    fitter = ContextFitter("truncate_oldest", window=window)
    assert fitter.overflow(plain) == 0
    request = {**plain, "response_format": response_format}
    extra = response_format_tokens(response_format, MODEL)
    assert extra > 150 and fitter.overflow(request) == count_request_tokens(request) + 100 - window

    async def never(_: Any) -> str:
        raise AssertionError("truncate_oldest does not summarize")

    fitted = await fitter.fit(request, never)
    assert fitted["response_format"] is response_format
    assert count_request_tokens(fitted) + 100 <= window and fitter.overflow(fitted) == 0
