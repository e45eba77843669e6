"""JSON answers: schema instances with values from the text, JSON faults, refusals, re-prompts."""

from __future__ import annotations

import datetime
import enum
import json
from typing import Any

import jsonschema
import pytest
from openai import OpenAI
from pydantic import BaseModel, ValidationError

from prefect_openai_chat.simulator import Simulator


class Status(str, enum.Enum):
    paid = "paid"
    overdue = "overdue"
    draft = "draft"


class Line(BaseModel):
    description: str
    quantity: int
    unit_price: float


class Invoice(BaseModel):
    customer_name: str
    email: str
    invoice_date: datetime.date
    total: float
    currency: str
    status: Status
    notes: str | None = None
    lines: list[Line]


SCHEMA = Invoice.model_json_schema()
TEXT = (
    "Invoice for Ada Lovelace (ada@example.org), dated March 3, 2024. "
    "Total due: 1234.50 EUR. Status: OVERDUE."
)
FORMAT = {"type": "json_schema", "json_schema": {"name": "Invoice", "schema": SCHEMA}}


def _ask(client: OpenAI, fault: str | None = None, messages: Any = None, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model="gpt-4o-mini",
        messages=messages
        or [
            {"role": "system", "content": "Extract the invoice."},
            {"role": "user", "content": TEXT},
        ],
        response_format=kwargs.pop("response_format", FORMAT),
        extra_headers={"x-simulator-fault": fault} if fault else None,
        **kwargs,
    )


def test_json_schema_answer_uses_the_text(client: OpenAI) -> None:
    invoice = Invoice.model_validate_json(_ask(client).choices[0].message.content)
    assert invoice.customer_name == "Ada Lovelace" and invoice.email == "ada@example.org"
    assert invoice.invoice_date == datetime.date(2024, 3, 3)
    assert (invoice.total, invoice.currency, invoice.status) == (1234.5, "EUR", Status.overdue)
    assert invoice.lines


def test_schema_features_and_placeholders(client: OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "site": {"type": "string", "format": "uri"},
            "when": {"type": "string", "format": "date-time"},
            "score": {"type": "integer", "minimum": 3, "maximum": 5},
            "ratio": {"type": "number", "exclusiveMaximum": 1, "minimum": 0},
            "flag": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "code": {"type": "string", "minLength": 4, "maxLength": 4},
            "kind": {"const": "fixed"},
            "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "nested": {"$ref": "#/$defs/Inner"},
        },
        "required": [
            "id",
            "site",
            "when",
            "score",
            "ratio",
            "flag",
            "tags",
            "code",
            "kind",
            "nested",
        ],
        "$defs": {
            "Inner": {
                "type": "object",
                "properties": {"level": {"enum": ["low", "high"]}},
                "required": ["level"],
            }
        },
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    for text in ("nothing useful here", "the level is HIGH, flag: yes"):
        reply = _ask(client, messages=[{"role": "user", "content": text}], response_format=fmt)
        value = json.loads(reply.choices[0].message.content)
        jsonschema.validate(value, schema)
    assert value["nested"]["level"] == "high" and value["flag"] is True


def test_json_object_finds_the_schema_in_the_system_message(client: OpenAI) -> None:
    system = f"Return JSON matching this schema:\n{json.dumps(SCHEMA)}"
    reply = _ask(
        client,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": TEXT}],
        response_format={"type": "json_object"},
    )
    assert Invoice.model_validate_json(reply.choices[0].message.content).email == "ada@example.org"


def test_json_object_without_schema_gives_a_small_object(client: OpenAI) -> None:
    reply = _ask(
        client,
        messages=[{"role": "user", "content": "As json: " + TEXT}],
        response_format={"type": "json_object"},
    )
    value = json.loads(reply.choices[0].message.content)
    assert (
        value["email"] == "ada@example.org" and value["date"] == "2024-03-03" and "summary" in value
    )


def test_forced_tool_call_answers_with_arguments(client: OpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "record_invoice", "parameters": SCHEMA}}]
    for choice, finish in (
        ({"type": "function", "function": {"name": "record_invoice"}}, "stop"),
        ("required", "tool_calls"),
    ):
        reply = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": TEXT}],
            tools=tools,
            tool_choice=choice,
        )  # type: ignore[arg-type]
        message = reply.choices[0].message
        assert message.content is None and reply.choices[0].finish_reason == finish
        call = message.tool_calls[0]  # type: ignore[index]
        assert call.id.startswith("call_") and call.function.name == "record_invoice"  # type: ignore[union-attr]
        assert Invoice.model_validate_json(call.function.arguments).customer_name == "Ada Lovelace"  # type: ignore[union-attr]


@pytest.mark.parametrize("fault", ["malformed-json", "fenced-json", "prose-json", "lazy"])
def test_syntax_faults_break_parsing_but_keep_the_data(client: OpenAI, fault: str) -> None:
    content = _ask(client, fault).choices[0].message.content
    with pytest.raises(ValueError):
        json.loads(content)
    assert "Ada Lovelace" in content
    if fault == "fenced-json":
        assert content.startswith("```json\n") and content.endswith("\n```")
    if fault == "lazy":
        assert "// ... rest of fields" in content


@pytest.mark.parametrize("fault", ["wrong-types", "missing-fields"])
def test_schema_faults_parse_but_fail_validation(client: OpenAI, fault: str) -> None:
    content = _ask(client, fault).choices[0].message.content
    data = json.loads(content)
    with pytest.raises(ValidationError):
        Invoice.model_validate(data)
    if fault == "wrong-types":
        assert data["status"] not in [s.value for s in Status]


def test_truncated_json_stops_at_max_tokens(client: OpenAI) -> None:
    reply = _ask(client, "truncated-json", max_tokens=60)
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 60
    with pytest.raises(ValueError):
        json.loads(reply.choices[0].message.content)
    untruncated = _ask(client, "truncated-json")
    assert untruncated.choices[0].finish_reason == "length"


def test_refusal_and_content_filter(client: OpenAI) -> None:
    refusal = _ask(client, "refusal").choices[0]
    assert (
        refusal.message.content is None
        and refusal.message.refusal
        and refusal.finish_reason == "stop"
    )
    filtered = _ask(client, "content-filter").choices[0]
    assert filtered.finish_reason == "content_filter"
    assert filtered.message.content is not None and "}" not in filtered.message.content
    plain = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-simulator-fault": "lazy"},
    )  # type: ignore[arg-type]
    assert any(
        tail in plain.choices[0].message.content
        for tail in ("// ... rest of code", "[truncated]", "...")
    )


def test_json_faults_do_not_touch_plain_prompts(client: OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-simulator-fault": "fenced-json"},
    )  # type: ignore[arg-type]
    assert "```" not in reply.choices[0].message.content


def _reprompt(first_answer: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Extract the invoice."},
        {"role": "user", "content": TEXT},
        {"role": "assistant", "content": first_answer},
        {
            "role": "user",
            "content": "Your answer failed validation: status: Input should be 'paid', "
            "'overdue' or 'draft'. Answer again.",
        },
    ]


def test_reprompt_gets_a_valid_answer_and_is_counted() -> None:
    with Simulator(fault_rates={"wrong-types": 1.0}) as sim:
        client = sim.client()
        bad = _ask(client, fault="wrong-types").choices[0].message.content
        fixed = client.chat.completions.create(
            model="gpt-4o-mini", messages=_reprompt(bad), response_format=FORMAT
        )  # type: ignore[arg-type]
        assert (
            Invoice.model_validate_json(fixed.choices[0].message.content).status == Status.overdue
        )
        assert sim.stats().reprompts == 1


def test_reprompt_failure_rate_applies() -> None:
    with Simulator(reprompt_failure_rate=1.0) as sim:
        content = (
            sim.client()
            .chat.completions.create(
                model="gpt-4o-mini", messages=_reprompt("{}"), response_format=FORMAT
            )
            .choices[0]
            .message.content
        )  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            Invoice.model_validate_json(content)


def test_sloppy_json_profile_rates_and_recovery() -> None:
    """About 15-20% of first answers are broken; nearly all re-prompts fix them."""
    with Simulator(profile="sloppy-json", seed=5) as sim:
        client = sim.client()
        broken = fixed = 0
        for i in range(300):
            messages = [{"role": "user", "content": f"Record {i}: " + TEXT}]
            content = _ask(client, messages=messages).choices[0].message.content
            try:
                Invoice.model_validate_json(content)
                continue
            except ValidationError:
                broken += 1
            again = _ask(
                client,
                messages=[
                    *messages,
                    {"role": "assistant", "content": content},
                    {"role": "user", "content": "Fix it."},
                ],
            )
            try:
                Invoice.model_validate_json(again.choices[0].message.content)
                fixed += 1
            except ValidationError:
                pass
        assert 0.12 <= broken / 300 <= 0.26
        assert fixed >= broken - 4
        assert sim.stats().reprompts == broken


def test_a_value_the_text_does_not_give_is_guessed_the_same_in_every_request(
    client: OpenAI,
) -> None:
    """Like a model at temperature 0, the simulated model guesses the same value for the
    same record and field whatever else the request holds: the first ask, a re-ask of that
    field alone, and a request under another instruction agree."""
    vague = "help?? it does not work"  # no status, no date, no total: each one a guess
    subset = {
        "type": "object",
        "properties": {"status": SCHEMA["properties"]["status"], "total": {"type": "number"}},
        "required": ["status", "total"],
        "$defs": SCHEMA["$defs"],
    }
    ask_subset = {"type": "json_schema", "json_schema": {"name": "Fields", "schema": subset}}
    first = json.loads(
        _ask(client, messages=[{"role": "user", "content": vague}]).choices[0].message.content
    )
    reask = [
        {"role": "system", "content": "Read the ticket."},
        {"role": "user", "content": vague},
        {"role": "assistant", "content": '{"status": "pending"}'},
        {"role": "user", "content": "Fix only these fields:\n- status: not an allowed value"},
    ]
    again = json.loads(
        _ask(client, messages=reask, response_format=ask_subset).choices[0].message.content
    )
    assert (again["status"], again["total"]) == (first["status"], first["total"])
    assert (
        first["invoice_date"]
        == json.loads(_ask(client, messages=reask).choices[0].message.content)["invoice_date"]
    )
    other = json.loads(  # another record: its own guesses (these two differ at seed 7)
        _ask(client, messages=[{"role": "user", "content": "nothing works, help"}])
        .choices[0]
        .message.content
    )
    assert (other["total"], other["invoice_date"]) != (first["total"], first["invoice_date"])
