"""Properties of stream assembly (`chat/response.py`): a completion streamed in chunks split
anywhere - at any byte of the SSE body, with `None` deltas, empty and unknown fields, a
usage-only last chunk, tool-call arguments in fragments - assembles to the same result as
the completion sent whole; any other chunk or body gives a result or a typed error.

Chunks are decoded by the `openai` SDK's own SSE decoder and `construct_type`, as the SDK
does on the wire; a whole answer is read from its JSON bytes, as the sender reads it, and
gives what the SDK's `ChatCompletion` of the same body gives."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from openai._models import construct_type
from openai._streaming import SSEDecoder
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from prop_support import JSON_VALUES

from prefect_openai_chat.chat.response import (
    StreamAccumulator,
    result_from_body,
    result_from_completion,
    result_from_response,
)
from prefect_openai_chat.errors import IncompleteStreamError, MalformedResponseError
from prefect_openai_chat.results import ChatResult

MODEL = "gpt-4o-mini-2024-07-18"
FINISH = st.sampled_from(["stop", "length", "tool_calls", "content_filter", "banana", "eos"])
TEXT = st.text(max_size=60)
CALLS = st.lists(st.tuples(st.text(min_size=1, max_size=8), TEXT), max_size=3)
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def pieces(data: st.DataObject, text: str) -> list[str]:
    """`text` cut at a few positions drawn by hypothesis (empty pieces included)."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=4)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def whole(content: str | None, calls: list[tuple[str, str]], finish: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
            for i, (n, a) in enumerate(calls)
        ]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": USAGE,
    }


def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def streamed(
    data: st.DataObject, content: str | None, calls: list[tuple[str, str]], finish: str
) -> list[dict[str, Any]]:
    """The chunks of the same answer, with noise a real server may add."""
    noise = st.sampled_from(
        [
            chunk(None),
            chunk({}),
            chunk({"content": None}),
            chunk({"content": ""}, x_unknown_field=1),
            {"id": "chatcmpl-1", "model": MODEL, "choices": []},
        ]
    )
    out = [chunk({"role": "assistant", "content": ""})]
    for piece in pieces(data, content or ""):
        out.append(chunk({"content": piece}))
        out += data.draw(st.lists(noise, max_size=1))
    for i, (name, arguments) in enumerate(calls):
        first = {"index": i, "id": f"call_{i}", "type": "function", "function": {"name": name}}
        out.append(chunk({"tool_calls": [first]}))
        for piece in pieces(data, arguments):
            out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
    out.append(chunk({}, finish))
    out.append({**chunk(None), "choices": [], "usage": USAGE})  # the usage-only last chunk
    return out


def sse_body(chunks: list[Any], done: bool) -> bytes:
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


def assemble(body: bytes, data: st.DataObject) -> ChatResult:
    """Decode `body` split at any bytes, as the SDK does, and assemble its chunks."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=6)))
    bounds = [0, *cuts, len(body)]
    network = iter([body[a:b] for a, b in itertools.pairwise(bounds)])
    accumulator = StreamAccumulator()
    for event in SSEDecoder().iter_bytes(network):
        if event.data.startswith("[DONE]"):
            break
        accumulator.add(construct_type(type_=ChatCompletionChunk, value=event.json()))
    return accumulator.result("req_1", "the server")


def same_answer(a: ChatResult, b: ChatResult) -> None:
    fields = ("content", "tool_calls", "refusal", "finish_reason", "model", "response_id", "usage")
    assert {f: getattr(a, f) for f in fields} == {f: getattr(b, f) for f in fields}


@given(st.data(), st.none() | TEXT, CALLS, FINISH, st.booleans())
def test_a_stream_split_anywhere_assembles_to_the_whole_answer(
    data: st.DataObject, content: str | None, calls: list[tuple[str, str]], finish: str, done: bool
) -> None:
    if content is None and not calls:
        content = ""  # an empty answer reads as "" both ways
    expected = result_from_completion(
        construct_type(type_=ChatCompletion, value=whole(content, calls, finish)), "req_1"
    )
    got = assemble(sse_body(streamed(data, content, calls, finish), done), data)
    same_answer(got, expected)


@given(st.data(), TEXT)
def test_a_stream_cut_before_its_finish_reason_is_incomplete(
    data: st.DataObject, text: str
) -> None:
    chunks = streamed(data, text, [], "stop")[:-2]  # no finish chunk, no usage chunk
    try:
        assemble(sse_body(chunks, done=data.draw(st.booleans())), data)
    except IncompleteStreamError:
        return
    raise AssertionError("a stream without a finish_reason was taken as an answer")


CHUNKISH = st.fixed_dictionaries(
    {},
    optional={
        "id": JSON_VALUES,
        "model": JSON_VALUES,
        "usage": JSON_VALUES,
        "choices": JSON_VALUES
        | st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "index": JSON_VALUES,
                    "finish_reason": JSON_VALUES,
                    "delta": JSON_VALUES
                    | st.fixed_dictionaries(
                        {},
                        optional={
                            "content": JSON_VALUES,
                            "refusal": JSON_VALUES,
                            "tool_calls": JSON_VALUES,
                        },
                    ),
                },
            )
            | JSON_VALUES,
            max_size=2,
        ),
    },
)


@given(st.lists(CHUNKISH | JSON_VALUES, max_size=5))
def test_any_chunks_give_a_result_or_a_typed_error(chunks: list[Any]) -> None:
    accumulator = StreamAccumulator()
    try:
        for value in chunks:
            accumulator.add(construct_type(type_=ChatCompletionChunk, value=value))
    except ValueError:  # what the runner turns into MalformedResponseError
        return
    with contextlib.suppress(IncompleteStreamError, MalformedResponseError):
        assert isinstance(accumulator.result("req_1", "the server"), ChatResult)


class _Response:
    """What the sender hands `result_from_response`: the body's bytes and the headers."""

    def __init__(self, body: Any) -> None:
        self.content = json.dumps(body).encode()
        self.headers = {"content-type": "application/json"}


COMPLETIONISH = st.fixed_dictionaries(
    {},
    optional={
        "id": JSON_VALUES,
        "model": JSON_VALUES,
        "usage": JSON_VALUES,
        "choices": JSON_VALUES
        | st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "finish_reason": JSON_VALUES,
                    "message": JSON_VALUES
                    | st.fixed_dictionaries(
                        {},
                        optional={
                            "content": JSON_VALUES,
                            "refusal": JSON_VALUES,
                            "tool_calls": JSON_VALUES,
                        },
                    ),
                },
            ),
            max_size=2,
        ),
    },
)


@given(COMPLETIONISH | JSON_VALUES)
def test_any_completion_body_gives_a_result_or_a_malformed_response(body: Any) -> None:
    try:
        result = result_from_response(_Response(body), "req_1", "the server")
    except MalformedResponseError as exc:
        assert "the server answered 200" in str(exc)
    else:
        assert isinstance(result, ChatResult)
        assert result.content is not None or result.tool_calls or result.refusal is not None


def _read(body: Any) -> ChatResult | str:
    """The result, or the error's message without the text of a body that is no object
    (the SDK renders a list it was handed in its own way)."""
    try:
        return result_from_body(body, "req_1", "the server")
    except MalformedResponseError as exc:
        return re.sub(r"completion: .* \(request", "completion: ... (request", str(exc))


@given(COMPLETIONISH | JSON_VALUES)
def test_a_body_read_as_json_reads_as_the_sdks_objects_do(body: Any) -> None:
    """The sender reads the JSON itself; the SDK's `ChatCompletion` of the same body (what
    the sender read before, and the Batch API reads) gives the same result or error."""
    as_json = _read(json.loads(json.dumps(body)))
    as_objects = _read(construct_type(type_=ChatCompletion, value=body))
    if isinstance(as_json, str) and "instead of a chat completion" in as_json:
        assert not isinstance(body, dict)  # a list, a number: the SDK hands them back as is
    assert as_json == as_objects
