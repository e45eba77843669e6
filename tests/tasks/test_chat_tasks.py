"""chat_completion and its async and streaming twins, inside real Prefect flows."""

from __future__ import annotations

import logging

import pytest
from prefect import flow

from prefect_openai_chat import (
    ChatModel,
    ChatResult,
    achat_completion,
    astream_chat_completion,
    chat_completion,
    count_message_tokens,
    stream_chat_completion,
)
from prefect_openai_chat.errors import ContentFilteredError, InvalidInputError
from prefect_openai_chat.simulator import Simulator

MODEL = "gpt-4o-mini-2024-07-18"

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name three rivers in Europe."},
]


def _check_result(result: ChatResult, sim: Simulator) -> None:
    assert result.content
    assert result.finish_reason == "stop"
    assert result.model.startswith("gpt-4o-mini")
    assert result.request_id and result.request_id.startswith("req_")
    assert result.response_id and result.response_id.startswith("chatcmpl-")
    assert result.usage.prompt_tokens == count_message_tokens(MESSAGES, MODEL)
    assert result.usage.completion_tokens > 0
    assert result.cost_usd is not None and result.cost_usd > 0
    assert result.latency_s > 0
    assert result.http_attempts == 1
    assert sim.stats().requests == 1


def test_sync_task_in_a_flow(chat_model: ChatModel, fresh_sim: Simulator) -> None:
    @flow
    def one_call() -> ChatResult:
        return chat_completion(chat_model, MESSAGES)

    _check_result(one_call(), fresh_sim)


async def test_async_task_in_an_async_flow(chat_model: ChatModel, fresh_sim: Simulator) -> None:
    @flow
    async def one_call() -> ChatResult:
        return await achat_completion(chat_model, MESSAGES)

    _check_result(await one_call(), fresh_sim)


def test_sync_stream_collects_deltas(chat_model: ChatModel, fresh_sim: Simulator) -> None:
    pieces: list[str] = []

    @flow
    def one_stream() -> ChatResult:
        return stream_chat_completion(chat_model, MESSAGES, on_delta=pieces.append)

    result = one_stream()
    _check_result(result, fresh_sim)
    assert "".join(pieces) == result.content
    assert result.time_to_first_token_s is not None and result.time_to_first_token_s >= 0


async def test_async_stream(chat_model: ChatModel, fresh_sim: Simulator) -> None:
    @flow
    async def one_stream() -> ChatResult:
        return await astream_chat_completion(chat_model, MESSAGES)

    result = await one_stream()
    _check_result(result, fresh_sim)
    assert result.time_to_first_token_s is not None


def test_saved_block_by_name(chat_model: ChatModel, fresh_sim: Simulator) -> None:
    chat_model.save("tasks-test-model", overwrite=True)

    @flow
    def by_name() -> ChatResult:
        return chat_completion("tasks-test-model", MESSAGES)

    _check_result(by_name(), fresh_sim)


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([], "messages is empty"),
        ("hello", "not a string"),
        ([{"content": "hi"}], "has no 'role'"),
        ([{"role": "wizard", "content": "hi"}], "unknown role 'wizard'"),
        ([{"role": "user", "content": 42}], "must be a string"),
        ([{"role": "user"}], "has no 'content'"),
        (
            [{"role": "user", "content": "half an emoji: \ud83d"}],
            r"messages\[0\]\.content holds a lone surrogate \(\\ud83d\).*remove it",
        ),
        (
            [{"role": "user", "content": [{"type": "text", "text": "\udc00"}]}],
            r"messages\[0\]\.content\[0\]\.text holds a lone surrogate",
        ),
    ],
)
def test_bad_messages_fail_before_any_http_call(
    chat_model: ChatModel, fresh_sim: Simulator, messages: object, match: str
) -> None:
    @flow
    def bad() -> ChatResult:
        return chat_completion(chat_model, messages)

    with pytest.raises(InvalidInputError, match=match):
        bad()
    assert fresh_sim.stats().requests == 0


def test_empty_model_name_fails_before_any_http_call(
    chat_model: ChatModel, fresh_sim: Simulator
) -> None:
    @flow
    def bad() -> ChatResult:
        return chat_completion(chat_model, MESSAGES, model="  ")

    with pytest.raises(InvalidInputError, match="non-empty model name"):
        bad()
    assert fresh_sim.stats().requests == 0


def test_unknown_block_name_is_a_clear_error(fresh_sim: Simulator) -> None:
    @flow
    def missing() -> ChatResult:
        return chat_completion("no-such-block", MESSAGES)

    with pytest.raises(InvalidInputError, match="no saved ChatModel block named 'no-such-block'"):
        missing()
    assert fresh_sim.stats().requests == 0


def test_content_filter_raises_or_flags(chat_model: ChatModel, fresh_sim: Simulator) -> None:
    forced = {"extra_headers": {"x-simulator-fault": "content-filter"}}

    @flow
    def filtered(model: ChatModel) -> ChatResult:
        return chat_completion(model, MESSAGES, **forced)

    with pytest.raises(ContentFilteredError) as caught:
        filtered(chat_model)
    assert caught.value.partial.finish_reason == "content_filter"

    flagging = chat_model.model_copy(
        update={"content_filter": "flag", "safe_message": "[withheld]"}
    )
    result = filtered(flagging)
    assert result.flagged and result.content == "[withheld]"


def test_forced_tool_call_returns_the_call(chat_model: ChatModel, fresh_sim: Simulator) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]

    @flow
    def call_tool() -> ChatResult:
        return chat_completion(
            chat_model,
            [{"role": "user", "content": "Weather in Paris?"}],
            tools=tools,
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )

    result = call_tool()
    assert [c.name for c in result.tool_calls] == ["get_weather"]
    assert '"city"' in result.tool_calls[0].arguments
    assert result.usage.prompt_tokens == count_message_tokens(
        [{"role": "user", "content": "Weather in Paris?"}], MODEL, tools=tools
    )


def test_one_log_line_without_prompt_or_key(
    chat_model: ChatModel, fresh_sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    @flow
    def one_call() -> ChatResult:
        return chat_completion(chat_model, MESSAGES)

    with caplog.at_level(logging.INFO):
        result = one_call()
    lines = [r.getMessage() for r in caplog.records if "request_id=" in r.getMessage()]
    assert len(lines) == 1
    assert result.request_id in lines[0] and "tokens=" in lines[0] and "attempts=1" in lines[0]
    text = caplog.text
    assert "Name three rivers" not in text
    assert fresh_sim.api_key not in text
