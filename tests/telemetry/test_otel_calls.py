"""OpenTelemetry spans and metrics of real chat calls inside real Prefect flows."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from flow_support import make_model
from opentelemetry.trace import SpanKind, StatusCode
from otel_support import Otel
from prefect import flow
from prefect.runtime import flow_run

from prefect_openai_chat import ChatModel, ChatResult, chat_completion, stream_chat_completion
from prefect_openai_chat.errors import InsufficientQuotaError
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.telemetry import CAPTURE_ENV, FLOW_RUN_ID, PREFIX, TASK_RUN_ID

MARKER = "Zanzibar-7781"  # a word of the prompt that must not reach a span by default
FAKE_KEY = "sk-proj-abcdefgh12345678"  # a key-shaped string in the prompt
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": f"Name three rivers near {MARKER}. My key is {FAKE_KEY}."},
]


def _call(chat_model: ChatModel, stream: bool = False) -> tuple[ChatResult, str]:
    """One chat task in a flow; the result and the flow run id."""

    @flow
    def one_call() -> tuple[ChatResult, str]:
        task = stream_chat_completion if stream else chat_completion
        return task(chat_model, MESSAGES), str(flow_run.id)

    return one_call()


def _every_value(otel: Otel) -> str:
    """Every attribute and event value of every span recorded, as one text."""
    values: list[Any] = []
    for span in otel.finished():
        values += list((span.attributes or {}).values())
        for event in span.events:
            values += list((event.attributes or {}).values())
        values.append(span.status.description)
    return json.dumps(values, default=str)


def test_a_chat_task_is_one_client_span_with_the_genai_attributes_and_metrics(
    otel: Otel, chat_model: ChatModel, fresh_sim: Simulator
) -> None:
    result, run_id = _call(chat_model)

    [span] = otel.calls()
    a = span.attributes or {}
    assert span.name == f"chat {chat_model.model}"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is not StatusCode.ERROR
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "openai"
    assert a["gen_ai.request.model"] == chat_model.model
    assert a["gen_ai.response.model"] == result.model
    assert a["gen_ai.response.id"] == result.response_id
    assert tuple(a["gen_ai.response.finish_reasons"]) == ("stop",)
    assert a["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens > 0
    assert a["gen_ai.usage.output_tokens"] == result.usage.completion_tokens > 0
    assert a["server.address"] == "127.0.0.1"
    assert a[PREFIX + "cost_usd"] == result.cost_usd
    assert a[PREFIX + "http_attempts"] == 1 and a[PREFIX + "retries"] == 0
    assert a[PREFIX + "circuit_state"] == "closed"
    assert a[PREFIX + "circuit_wait_s"] >= 0 and a[PREFIX + "limiter_wait_s"] >= 0
    assert a[PREFIX + "stream"] is False
    assert a[FLOW_RUN_ID] == run_id
    assert a[TASK_RUN_ID]
    assert "error.type" not in a

    tokens = {
        p.attributes["gen_ai.token.type"]: p for p in otel.points("gen_ai.client.token.usage")
    }
    assert tokens["input"].sum == result.usage.prompt_tokens
    assert tokens["output"].sum == result.usage.completion_tokens
    assert tokens["input"].attributes["gen_ai.request.model"] == chat_model.model
    [duration] = otel.points("gen_ai.client.operation.duration")
    assert duration.count == 1 and 0 < duration.sum < 30
    assert duration.attributes["gen_ai.response.model"] == result.model
    assert "error.type" not in duration.attributes


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        ("no-such-fault", "openai.BadRequestError"),  # the simulator answers 400
        ("quota", "prefect_openai_chat.errors.InsufficientQuotaError"),  # 429 insufficient_quota
    ],
)
def test_a_failing_call_sets_error_type_and_the_error_status(
    otel: Otel, fresh_sim: Simulator, fault: str, error_type: str
) -> None:
    with pytest.raises(Exception) as raised:
        _call(make_model(fresh_sim, fault=fault))
    if fault == "quota":
        assert isinstance(raised.value, InsufficientQuotaError)

    [span] = otel.calls()
    a = span.attributes or {}
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == error_type  # the class only: no server words by default
    assert a["error.type"] == error_type
    assert a[PREFIX + "http_attempts"] == 1
    assert "gen_ai.usage.input_tokens" not in a
    [duration] = otel.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == error_type
    assert otel.points("gen_ai.client.token.usage") == []


def test_a_streamed_call_has_its_span_with_tokens_and_time_to_first_token(
    otel: Otel, chat_model: ChatModel, fresh_sim: Simulator
) -> None:
    result, run_id = _call(chat_model, stream=True)

    [span] = otel.calls()
    a = span.attributes or {}
    assert a[PREFIX + "stream"] is True
    assert a["gen_ai.usage.output_tokens"] == result.usage.completion_tokens > 0
    assert a[PREFIX + "time_to_first_token_s"] > 0
    assert a[FLOW_RUN_ID] == run_id
    assert {
        p.attributes["gen_ai.token.type"] for p in otel.points("gen_ai.client.token.usage")
    } == {
        "input",
        "output",
    }


def test_no_span_holds_the_prompt_the_answer_or_the_key_by_default(
    otel: Otel, chat_model: ChatModel, fresh_sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CAPTURE_ENV, raising=False)
    result, _ = _call(chat_model)
    with pytest.raises(openai.BadRequestError):  # a failure's span too: its message stays out
        _call(make_model(fresh_sim, fault="no-such-fault"))

    recorded = _every_value(otel)
    assert result.content and result.content not in recorded
    assert MARKER not in recorded and FAKE_KEY not in recorded
    assert fresh_sim.api_key not in recorded
    assert not any(
        "gen_ai.input.messages" in (s.attributes or {})
        or "gen_ai.output.messages" in (s.attributes or {})
        for s in otel.finished()
    )


def test_with_capture_on_the_messages_are_there_redacted(
    otel: Otel, chat_model: ChatModel, fresh_sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CAPTURE_ENV, "true")
    result, _ = _call(chat_model)

    [span] = otel.calls()
    a = span.attributes or {}
    sent = json.loads(a["gen_ai.input.messages"])
    assert [m["role"] for m in sent] == ["system", "user"]
    assert MARKER in sent[1]["parts"][0]["content"]
    assert FAKE_KEY not in a["gen_ai.input.messages"] and "***" in sent[1]["parts"][0]["content"]
    [answer] = json.loads(a["gen_ai.output.messages"])
    assert answer["role"] == "assistant" and answer["finish_reason"] == "stop"
    assert answer["parts"][0]["content"] == result.content
    assert fresh_sim.api_key not in _every_value(otel)
