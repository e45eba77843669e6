"""Streams: chunk shapes, usage chunk, tool-call deltas, and the stream faults."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai import OpenAI

from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.tokens import count_message_tokens, count_text_tokens

USER = [{"role": "user", "content": "Tell me about the nightly batch."}]


def _frames(sim: Simulator, body: dict[str, object], fault: str = "ok") -> list[str]:
    response = httpx.post(
        sim.base_url + "/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {sim.api_key}", "x-simulator-fault": fault},
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    return [line[6:] for line in response.text.split("\n\n") if line.startswith("data: ")]


def test_stream_frames_match_the_api(simulator: Simulator) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": USER,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    frames = _frames(simulator, body)
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    first, last, usage = chunks[0], chunks[-2], chunks[-1]
    assert first["object"] == "chat.completion.chunk" and first["id"].startswith("chatcmpl-")
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert first["choices"][0]["finish_reason"] is None and first["usage"] is None
    assert last["choices"][0]["delta"] == {} and last["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == [] and usage["usage"]["prompt_tokens"] == count_message_tokens(
        USER, "gpt-4o-mini"
    )
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert usage["usage"]["completion_tokens"] == count_text_tokens(text, "gpt-4o-mini")
    assert len({c["id"] for c in chunks}) == 1
    plain = _frames(simulator, {"model": "gpt-4o-mini", "messages": USER, "stream": True})
    assert all("usage" not in json.loads(f) for f in plain[:-1])


def test_stream_and_non_stream_say_the_same(client: OpenAI) -> None:
    whole = client.chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)  # type: ignore[arg-type]
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == whole.choices[0].message.content


def test_stream_with_n_choices(client: OpenAI) -> None:
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True, n=2)  # type: ignore[arg-type]
    finishes = {
        c.choices[0].index: c.choices[0].finish_reason
        for c in stream
        if c.choices and c.choices[0].finish_reason
    }
    assert finishes == {0: "stop", 1: "stop"}


def test_tool_call_streams_in_deltas(client: OpenAI) -> None:
    params = {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]}
    tools = [{"type": "function", "function": {"name": "save", "parameters": params}}]
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Save ada@example.org"}],
        tools=tools,  # type: ignore[arg-type]
        tool_choice="required",
        stream=True,
    )
    chunks = [c for c in stream if c.choices]
    first = chunks[0].choices[0].delta.tool_calls
    assert first and first[0].id and first[0].function and first[0].function.name == "save"
    args = "".join(
        (c.choices[0].delta.tool_calls[0].function.arguments or "")  # type: ignore[union-attr, index]
        for c in chunks
        if c.choices[0].delta.tool_calls
    )
    assert json.loads(args) == {"email": "ada@example.org"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_async_stream_with_usage(simulator: Simulator) -> None:
    async with simulator.async_client() as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_stream_error_event_raises_api_error(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=USER,
        stream=True,
        extra_headers={"x-simulator-fault": "stream-error"},  # type: ignore[arg-type]
    )
    got: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            got.append(chunk.choices[0].delta.content or "")
    assert not isinstance(info.value, openai.APIStatusError)
    assert info.value.type == "server_error" and len(got) >= 1


def test_cut_stream_ends_without_finish_or_done(simulator: Simulator) -> None:
    frames = _frames(simulator, {"model": "gpt-4o-mini", "messages": USER, "stream": True}, "cut")
    assert frames and frames[-1] != "[DONE]"
    assert all(json.loads(f)["choices"][0]["finish_reason"] is None for f in frames)


def test_stalled_stream_times_out_mid_way() -> None:
    with Simulator(stall_s=5) as sim:
        stream = sim.client(timeout=0.3).chat.completions.create(
            model="gpt-4o-mini",
            messages=USER,
            stream=True,
            extra_headers={"x-simulator-fault": "stall"},  # type: ignore[arg-type]
        )
        got = []
        with pytest.raises(openai.APITimeoutError):
            for chunk in stream:
                got.append(chunk)
        assert 1 <= len(got) <= 4


def test_stalled_stream_drops_after_stall_s() -> None:
    with Simulator(stall_s=0.1) as sim:
        stream = sim.client(timeout=5).chat.completions.create(
            model="gpt-4o-mini",
            messages=USER,
            stream=True,
            extra_headers={"x-simulator-fault": "stall"},  # type: ignore[arg-type]
        )
        with pytest.raises(openai.APIConnectionError):
            list(stream)


def test_latency_settings_shape_the_stream() -> None:
    import time

    with Simulator(ttft_s=0.15, tokens_per_s=200) as sim:
        client = sim.client()
        start = time.monotonic()
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=USER, stream=True, max_tokens=20
        )  # type: ignore[arg-type]
        first_at = None
        for chunk in stream:
            if first_at is None and chunk.choices and chunk.choices[0].delta.content:
                first_at = time.monotonic() - start
        total = time.monotonic() - start
        assert first_at is not None and 0.14 <= first_at < 0.6
        assert total >= 0.15 + 15 / 200
