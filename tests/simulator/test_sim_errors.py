"""Error answers: each maps to the right openai exception, code, type, status and request id."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.tokens import count_message_tokens

USER = [{"role": "user", "content": "hello"}]


def _raw(sim: Simulator, body: Any, key: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key or sim.api_key}"}
    if isinstance(body, bytes):
        return httpx.post(sim.base_url + "/chat/completions", content=body, headers=headers)
    return httpx.post(sim.base_url + "/chat/completions", json=body, headers=headers)


def test_unknown_key_is_401(simulator: Simulator) -> None:
    client = OpenAI(base_url=simulator.base_url, api_key="sk-wrong-key-1234", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
    assert info.value.status_code == 401 and info.value.code == "invalid_api_key"
    assert info.value.type == "invalid_request_error"
    assert info.value.request_id and info.value.request_id.startswith("req_")
    assert "sk-wrong-key-1234" not in str(info.value)


def test_extra_api_keys_are_accepted() -> None:
    with Simulator(api_keys=["sk-a", "sk-b"]) as sim:
        client = OpenAI(base_url=sim.base_url, api_key="sk-b", max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
        assert sim.stats().tokens_by_key["sk-b"]["prompt"] == 8


def test_unknown_model_is_404(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-nonexistent-9", messages=USER)  # type: ignore[arg-type]
    assert info.value.code == "model_not_found" and info.value.status_code == 404


def test_context_length_exceeded_states_both_numbers(client: OpenAI) -> None:
    messages = [{"role": "user", "content": "word " * 7000}]
    prompt = count_message_tokens(messages, "gpt-4")
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4", messages=messages, max_tokens=2000)  # type: ignore[arg-type]
    assert info.value.code == "context_length_exceeded" and info.value.param == "messages"
    assert (
        f"maximum context length is 8192 tokens. However, you requested {prompt + 2000} tokens "
        f"({prompt} in the messages, 2000 in the completion)" in info.value.message
    )


def test_max_tokens_above_the_model_limit(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=USER, max_tokens=100_000)  # type: ignore[arg-type]
    assert info.value.param == "max_tokens" and info.value.code == "invalid_value"


MISSING = "missing_required_parameter"
FORCE_X = {"type": "function", "function": {"name": "x"}}


def _with(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": USER, **extra}


def _one(message: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [message]}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (b"{not json", None, None),
        ({"model": "gpt-4o-mini"}, "messages", MISSING),
        ({"messages": USER}, "model", None),
        (_with(messages="hi"), "messages", "invalid_type"),
        (_with(messages=[]), "messages", "empty_array"),
        (_one({"role": "robot", "content": "x"}), "messages[0].role", "invalid_value"),
        (_one({"content": "x"}), "messages[0].role", MISSING),
        (_one({"role": "user", "content": 5}), "messages[0].content", "invalid_type"),
        (_one({"role": "user"}), "messages[0].content", MISSING),
        (_one({"role": "tool", "content": "x"}), "messages[0].tool_call_id", MISSING),
        (_with(max_tokens="10"), "max_tokens", "invalid_type"),
        (_with(max_tokens=0), "max_tokens", "integer_below_min_value"),
        (_with(n=500), "n", "integer_above_max_value"),
        (_with(temperature=3), "temperature", "decimal_out_of_range"),
        (_with(stream="yes"), "stream", "invalid_type"),
        (_with(response_format={"type": "xml"}), "response_format.type", "invalid_value"),
        (_with(response_format={"type": "json_object"}), "messages", None),
        (_with(tools=[{"type": "function"}]), "tools[0].function", MISSING),
        (_with(tool_choice=FORCE_X), "tool_choice", "invalid_value"),
        ([1, 2], "body", "invalid_type"),
    ],
)
def test_malformed_bodies_are_400_never_500(
    simulator: Simulator, body: Any, param: str | None, code: str | None
) -> None:
    response = _raw(simulator, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param and error["code"] == code
    assert error["message"]
    assert response.headers["x-request-id"].startswith("req_")


def test_bad_request_maps_to_bad_request_error(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "robot", "content": "x"}]
        )  # type: ignore[arg-type, misc, list-item]
    assert info.value.param == "messages[0].role" and info.value.status_code == 400


@pytest.mark.parametrize(
    ("fmt", "code", "type_"),
    [("vllm", "404", "NotFoundError"), ("ollama", None, "invalid_request_error")],
)
def test_other_servers_error_formats(fmt: str, code: str | None, type_: str) -> None:
    with Simulator(error_format=fmt) as sim:
        response = _raw(sim, {"model": "nope", "messages": USER})
        body = response.json()
        if fmt == "vllm":
            assert body == {
                "object": "error", "message": body["message"], "type": "NotFoundError",
                "param": None, "code": 404,
            }  # fmt: skip
        else:
            assert body["error"]["param"] is None and body["error"]["code"] is None
        with pytest.raises(openai.NotFoundError) as info:
            sim.client().chat.completions.create(model="nope", messages=USER)  # type: ignore[arg-type]
        assert info.value.code == code and info.value.type == type_
        assert "does not exist" in info.value.message
