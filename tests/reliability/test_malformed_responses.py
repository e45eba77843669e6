"""Malformed answers over real HTTP, through the real `openai` client and the plugin's
`ChatRunner` (plain and streamed), the extraction loop, and the Prefect tasks: each ends
in a typed error of the plugin (or the `openai` error the policy lets through, which the
error table classifies) or in a valid result, within the call deadline - never a hang,
never a bare KeyError/TypeError/AttributeError/ValidationError from deep inside.

A tiny canned server (`malformed_support.py`) sends each answer. The simulator's own
shape faults (`{}`, `choices: []`, a body that is not JSON, text/plain, content null
with "stop", a stream without `[DONE]`) are tested in tests/defects/test_malformed_answers.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from malformed_support import (
    DONE,
    HELLO_STREAM,
    MODEL,
    USAGE_CHUNK,
    Canned,
    CannedServer,
    as_json,
    canned_server,
    choice,
    chunk,
    completion,
    sse,
)
from model_support import fast_model
from prefect import flow
from pydantic import BaseModel
from registry_support import clear_resilience

from prefect_openai_chat import (
    ChatModel,
    ChatResult,
    OpenAICredentials,
    chat_completion,
    extract,
    stream_chat_completion,
)
from prefect_openai_chat.blocks.assembly import RUNNERS
from prefect_openai_chat.errors import (
    ChatError,
    IncompleteStreamError,
    MalformedResponseError,
    RateLimitPatienceError,
)
from prefect_openai_chat.extraction.engine import run_extraction
from prefect_openai_chat.resilience.classify import error_row
from prefect_openai_chat.tasks.extract import runner_call

CALL_TIMEOUT_S = 10.0
HTML_503 = (
    b"<html><head><title>503 Service Temporarily Unavailable</title></head>"
    b"<body><center><h1>503 Service Temporarily Unavailable</h1></center></body></html>"
)
RATE_LIMITED = {"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}}
TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "lookup", "arguments": '{"city": "Oslo"}'},
}
HUGE_TEXT = "lorem ipsum " * 400_000  # a 4.8 MB answer

# case: (answer, streamed request?, what it must end in, HTTP attempts made)
CASES: dict[str, tuple[Canned, bool, Any, int]] = {
    "choices null": (as_json(completion(choices=None)), False, MalformedResponseError, 2),
    "choice not an object": (as_json(completion(choices=["x"])), False, MalformedResponseError, 2),
    "message null": (as_json(choice(message=None)), False, MalformedResponseError, 2),
    "message a string": (as_json(choice(message="Hi!")), False, MalformedResponseError, 2),
    "content a number": (
        as_json(choice(message={"role": "assistant", "content": 42})),
        False,
        MalformedResponseError,
        2,
    ),
    "content null with tool calls": (
        as_json(
            choice(
                message={"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
                finish_reason="tool_calls",
            )
        ),
        False,
        lambda r: r.content is None and r.tool_calls[0].arguments == '{"city": "Oslo"}',
        1,
    ),
    "tool call with null id, name, arguments": (
        as_json(
            choice(
                message={
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": None, "function": {"name": None, "arguments": None}}],
                },
                finish_reason="tool_calls",
            )
        ),
        False,
        lambda r: r.tool_calls[0].id == "" and r.tool_calls[0].arguments == "",
        1,
    ),
    "unknown finish_reason": (
        as_json(choice(finish_reason="end_of_turn")),
        False,
        lambda r: r.content == "Hi!" and r.finish_reason == "end_of_turn",
        1,
    ),
    "usage missing": (
        as_json(completion(usage=None)),
        False,
        lambda r: r.content == "Hi!" and r.usage.prompt_tokens > 0,  # counted locally
        1,
    ),
    "usage not numbers": (
        as_json(completion(usage={"prompt_tokens": "many", "completion_tokens": None})),
        False,
        lambda r: r.content == "Hi!" and r.usage.prompt_tokens > 0,
        1,
    ),
    "id and model not strings": (
        as_json(completion(id=5, model=["x"])),
        False,
        lambda r: r.content == "Hi!" and r.response_id is None,
        1,
    ),
    "JSON array": (as_json([1, 2]), False, MalformedResponseError, 2),
    "JSON null": (Canned(body=b"null"), False, MalformedResponseError, 2),
    "truncated JSON body": (
        Canned(body=json.dumps(completion()).encode()[:60]),
        False,
        MalformedResponseError,
        2,
    ),
    "connection dropped mid-body": (
        Canned(body=json.dumps(completion()).encode(), cut_after=60),
        False,
        openai.APIConnectionError,
        2,
    ),
    "stream connection dropped mid-way": (
        Canned(
            body=b"".join(HELLO_STREAM),
            content_type=b"text/event-stream",
            cut_after=len(HELLO_STREAM[0]) + 10,
        ),
        True,
        openai.APIConnectionError,
        2,
    ),
    "stream with [DONE]": (
        Canned(frames=[*HELLO_STREAM, USAGE_CHUNK, DONE]),
        True,
        lambda r: r.content == "Hi!" and r.usage.prompt_tokens == 9,
        1,
    ),
    "stream stopping mid-chunk": (
        Canned(frames=[*HELLO_STREAM[:2], chunk({"content": "more"})[:30]]),
        True,
        IncompleteStreamError,
        2,
    ),
    "stream whose usage chunk is cut": (
        Canned(frames=[*HELLO_STREAM, USAGE_CHUNK[:25]]),
        True,
        lambda r: r.content == "Hi!" and r.usage.prompt_tokens > 0,  # counted locally
        1,
    ),
    "stream with only a usage chunk": (
        Canned(frames=[USAGE_CHUNK, DONE]),
        True,
        IncompleteStreamError,
        2,
    ),
    "stream of nothing": (Canned(frames=[]), True, IncompleteStreamError, 2),
    "stream with a chunk that is not JSON": (
        Canned(frames=[b"data: not json\n\n", DONE]),
        True,
        MalformedResponseError,
        2,
    ),
    "stream with a null chunk": (
        Canned(frames=[b"data: null\n\n", DONE]),
        True,
        MalformedResponseError,
        2,
    ),
    "stream with a null choice": (
        Canned(frames=[sse({"id": "c", "model": MODEL, "choices": [None]}), DONE]),
        True,
        MalformedResponseError,
        2,
    ),
    "stream with unknown finish_reason": (
        Canned(frames=[*HELLO_STREAM[:3], chunk({}, "end_of_turn"), DONE]),
        True,
        lambda r: r.content == "Hi!" and r.finish_reason == "end_of_turn",
        1,
    ),
    "stream without ids, models or indexes": (
        Canned(
            frames=[
                sse({"choices": [{"delta": {"content": "Hi"}}]}),
                sse({"choices": [{"delta": {"tool_calls": [{"id": "a", "function": {}}]}}]}),
                sse({"choices": [{"finish_reason": "stop"}]}),
            ]
        ),
        True,
        lambda r: r.content == "Hi" and r.tool_calls[0].id == "a",
        1,
    ),
    "HTML 503 page": (
        Canned(status=503, body=HTML_503, content_type=b"text/html"),
        False,
        openai.InternalServerError,
        2,
    ),
    "429 with negative retry-after-ms": (
        as_json(RATE_LIMITED, 429, **{"retry-after-ms": "-5000"}),
        False,
        RateLimitPatienceError,
        None,
    ),
    "429 with retry-after abc": (
        as_json(RATE_LIMITED, 429, **{"retry-after": "abc"}),
        False,
        RateLimitPatienceError,
        None,
    ),
    "500 with an empty body": (Canned(status=500, body=b""), False, openai.InternalServerError, 2),
    "200 with a huge answer": (
        as_json(choice(message={"role": "assistant", "content": HUGE_TEXT})),
        False,
        lambda r: r.content == HUGE_TEXT,
        1,
    ),
    "200 with a huge body that is not JSON": (
        Canned(body=b"x" * 5_000_000),
        False,
        MalformedResponseError,
        2,
    ),
}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, CannedServer]]:
    with canned_server({name: case[0] for name, case in CASES.items()}) as served:
        yield served


def model_for(base_url: str, case: str) -> ChatModel:
    """A ChatModel whose every request asks the canned server for `case`."""
    model = fast_model(
        base_url,
        "sk-test",
        max_attempts=2,
        task_retries=0,
        backoff_base_s=0.01,
        rate_limit_patience_s=0.3,
        call_timeout_s=CALL_TIMEOUT_S,
        attempt_timeout_s=5.0,
    )
    model.credentials = OpenAICredentials(
        base_url=base_url, api_key="sk-test", default_headers={"x-case": case}
    )
    return model


def check_outcome(outcome: Any, expected: Any) -> None:
    """A valid result that passes the case's check, or the typed error it names."""
    if isinstance(expected, type):
        assert isinstance(outcome, expected), repr(outcome)
        assert isinstance(outcome, ChatError | openai.APIError), repr(outcome)
        assert error_row(outcome) != "unknown", repr(outcome)  # the table has a row for it
    else:
        assert isinstance(outcome, ChatResult), repr(outcome)
        assert expected(outcome), outcome.model_dump(exclude={"content"})


async def outcome_of(coro: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    try:
        outcome = await coro
    except Exception as exc:
        outcome = exc
    return outcome, time.perf_counter() - started


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_answer_ends_typed_and_in_time(
    server: tuple[str, CannedServer], case: str
) -> None:
    clear_resilience()
    base_url, app = server
    _, stream, expected, attempts = CASES[case]
    app.requests.clear()
    runner = RUNNERS.build(model_for(base_url, case))
    messages = [{"role": "user", "content": "Say hi."}]
    outcome, seconds = asyncio.run(outcome_of(runner.complete(messages, stream=stream)))
    check_outcome(outcome, expected)
    assert seconds < CALL_TIMEOUT_S
    if attempts is not None:
        assert app.requests[case] == attempts


class City(BaseModel):
    city: str


EXTRACT_CASES = [
    "choices null",
    "stream with a null chunk",
    "500 with an empty body",
    "content null with tool calls",
    "usage missing",
]


@pytest.mark.parametrize("case", EXTRACT_CASES)
def test_an_extraction_over_a_malformed_answer_ends_in_an_outcome_or_a_typed_error(
    server: tuple[str, CannedServer], case: str
) -> None:
    clear_resilience()
    runner = RUNNERS.build(model_for(server[0], case))
    extraction = run_extraction(
        runner_call(runner), City, "I live in Oslo.", model=MODEL, mode="tools", on_error="return"
    )
    result, seconds = asyncio.run(outcome_of(extraction))
    assert not isinstance(result, Exception), repr(result)
    assert seconds < CALL_TIMEOUT_S
    if case == "content null with tool calls":
        assert result.ok and result.value == City(city="Oslo")
    elif case == "usage missing":  # "Hi!" is no JSON: re-asked, then invalid
        assert result.outcome == "invalid" and result.calls == 3
    else:
        assert result.outcome == "error" and "the call failed" in (result.reason or "")
        last = result.errors[-1]
        assert any(name in last for name in ("MalformedResponseError", "InternalServerError"))


TASK_CASES = [
    (chat_completion, "message a string", False),
    (chat_completion, "HTML 503 page", False),
    (stream_chat_completion, "stream with a null choice", True),
    (stream_chat_completion, "stream with unknown finish_reason", True),
]


def test_the_prefect_tasks_end_typed_too(
    isolated_results: None, server: tuple[str, CannedServer]
) -> None:
    clear_resilience()
    base_url = server[0]

    @flow
    def night() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for task, case, _ in TASK_CASES:
            state = task.with_options(retry_delay_seconds=0)(
                model_for(base_url, case), [{"role": "user", "content": "Hi"}], return_state=True
            )
            out[case] = state.result(raise_on_failure=False)
        state = extract(
            model_for(base_url, "content null with tool calls"),
            City,
            "I live in Oslo.",
            mode="tools",
            return_state=True,
        )
        out["extract"] = state.result(raise_on_failure=False)
        return out

    started = time.perf_counter()
    out = night()
    assert time.perf_counter() - started < 4 * CALL_TIMEOUT_S
    for _, case, _ in TASK_CASES:
        check_outcome(out[case], CASES[case][2])
    assert out["extract"].ok and out["extract"].value == City(city="Oslo")
