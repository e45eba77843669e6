"""Completions, models, usage figures, headers, determinism: the happy paths over real HTTP."""

from __future__ import annotations

import re
import socket

import httpx
import pytest
from openai import AsyncOpenAI, OpenAI

from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.tokens import (
    count_message_tokens,
    count_request_tokens,
    count_text_tokens,
)

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say something about pipelines.", "name": "ops"},
]
RATE_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
)


def test_completion_matches_the_api_shape_and_usage(client: OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    reply = raw.parse()
    body = raw.http_response.json()
    assert set(body) == {
        "id", "object", "created", "model", "choices", "usage", "service_tier", "system_fingerprint"
    }  # fmt: skip
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert body["system_fingerprint"].startswith("fp_")
    message = body["choices"][0]["message"]
    assert set(message) == {"role", "content", "refusal", "annotations"}
    assert body["choices"][0]["logprobs"] is None
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}
    assert set(body["usage"]["completion_tokens_details"]) == {
        "reasoning_tokens",
        "audio_tokens",
        "accepted_prediction_tokens",
        "rejected_prediction_tokens",
    }
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == count_message_tokens(MESSAGES, "gpt-4o-mini")
    content = reply.choices[0].message.content or ""
    assert reply.usage.completion_tokens == count_text_tokens(content, "gpt-4o-mini")
    assert 20 <= reply.usage.completion_tokens <= 60
    assert reply.choices[0].finish_reason == "stop"
    assert re.fullmatch(r"req_[0-9a-f]{32}", raw.headers["x-request-id"])
    for header in RATE_HEADERS:
        assert header in raw.headers


def test_usage_with_tools_and_cl100k_model(client: OpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Find a record.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "description": "Record id."},
                        "kind": {"type": "string", "enum": ["a", "b"]},
                    },
                },
            },
        }
    ]
    for model in ("gpt-4o", "gpt-3.5-turbo"):
        reply = client.chat.completions.create(model=model, messages=MESSAGES, tools=tools)  # type: ignore[arg-type]
        assert reply.usage is not None
        assert reply.usage.prompt_tokens == count_message_tokens(MESSAGES, model, tools)


def test_a_json_schema_response_format_is_billed_like_the_api(client: OpenAI) -> None:
    """The API shows the model a `json_schema` format's schema and bills it; `json_object`
    costs nothing more. The simulator bills what `count_request_tokens` counts."""
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city named."}},
        "required": ["city"],
        "additionalProperties": False,
    }
    formats = {
        "json_schema": {
            "type": "json_schema",
            "json_schema": {"name": "City", "schema": schema, "strict": True},
        },
        "json_object": {"type": "json_object"},
    }
    messages = [{"role": "user", "content": "Which city is this JSON about? Oslo."}]
    billed = {}
    for kind, response_format in formats.items():
        body = {"model": "gpt-4o-mini", "messages": messages, "response_format": response_format}
        reply = client.chat.completions.create(**body)  # type: ignore[call-overload]
        assert reply.usage is not None
        assert reply.usage.prompt_tokens == count_request_tokens(body)
        billed[kind] = reply.usage.prompt_tokens
    plain = count_message_tokens(messages, "gpt-4o-mini")
    assert billed["json_object"] == plain
    assert billed["json_schema"] > plain + 9


def test_max_tokens_gives_exact_length_and_n_choices(client: OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_completion_tokens=17, n=3
    )
    assert [c.index for c in reply.choices] == [0, 1, 2]
    counts = [count_text_tokens(c.message.content or "", "gpt-4o-mini") for c in reply.choices]
    assert counts == [17, 17, 17]
    assert all(c.finish_reason == "length" for c in reply.choices)
    assert reply.usage is not None and reply.usage.completion_tokens == 51
    assert len({c.message.content for c in reply.choices}) == 3


def test_answers_are_deterministic_by_seed_and_body(client: OpenAI) -> None:
    first = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    again = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    other = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.5)
    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.choices[0].message.content != other.choices[0].message.content
    assert first.id != again.id
    with Simulator(seed=8) as sim8:
        reply8 = sim8.client().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply8.choices[0].message.content != first.choices[0].message.content


def test_models_list_and_retrieve(client: OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in ids and "gpt-4.1" in ids
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"


def test_extra_models_are_served() -> None:
    with Simulator(extra_models={"llama3:8b": 8192}) as sim:
        client = sim.client()
        assert "llama3:8b" in [m.id for m in client.models.list()]
        reply = client.chat.completions.create(model="llama3:8b", messages=MESSAGES)
        assert reply.model == "llama3:8b"


async def test_async_client(simulator: Simulator) -> None:
    aclient: AsyncOpenAI = simulator.async_client()
    async with aclient:
        reply = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert reply.choices[0].message.role == "assistant"


def test_binds_loopback_only(simulator: Simulator) -> None:
    assert simulator.base_url.startswith("http://127.0.0.1:")
    with pytest.raises(ValueError, match="loopback"):
        Simulator(host="0.0.0.0")
    # Not reachable through another local interface address, if the machine has one.
    try:
        other = socket.gethostbyname(socket.gethostname())
    except OSError:
        other = "127.0.0.1"
    if not other.startswith("127."):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{other}:{simulator.port}/v1/models", timeout=1)


def test_unknown_route_is_an_openai_style_404(simulator: Simulator) -> None:
    response = httpx.post(simulator.base_url + "/completionz", json={})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (POST /v1/completionz)"
