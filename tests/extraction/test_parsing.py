"""Parsing answers cheapest first: plain JSON, fences, prose, local repair, lazy, refusal."""

from __future__ import annotations

import json

import pytest
from extraction_models import VALID_TICKET, Ticket
from pydantic import ValidationError

from prefect_openai_chat.extraction import parse_output, parse_result, validate
from prefect_openai_chat.results import ChatResult, ToolCall

PLAIN = json.dumps(VALID_TICKET)


def test_plain_json_needs_no_fix() -> None:
    outcome = parse_output(PLAIN)
    assert outcome.kind == "json" and outcome.data == VALID_TICKET
    assert outcome.fixes == () and outcome.repaired is False


@pytest.mark.parametrize(
    ("text", "fixes"),
    [
        (f"```json\n{PLAIN}\n```", ("fences",)),
        (f"```\n{PLAIN}\n```", ("fences",)),
        (f"Sure! Here it is:\n```json\n{PLAIN}\n```\nAnything else?", ("fences",)),
        (f"```python\nprint(1)\n```\n```json\n{PLAIN}\n```", ("fences",)),
        (
            f"Here it is:\n\n{json.dumps(VALID_TICKET, indent=2)}\n\nHope it helps!",
            ("prose",),
        ),
        (f"Note [1]: {{braces}} in prose come first. {PLAIN} and {{after}}", ("prose",)),
    ],
)
def test_fences_and_prose_are_stripped(text: str, fixes: tuple[str, ...]) -> None:
    outcome = parse_output(text)
    assert outcome.kind == "json"
    assert outcome.fixes == fixes and outcome.repaired
    assert outcome.data == VALID_TICKET
    assert json.loads(outcome.json_text) == VALID_TICKET


@pytest.mark.parametrize(
    "text",
    [
        PLAIN[:-1] + ",}",  # trailing comma
        PLAIN.replace('"', "'"),  # single quotes
        PLAIN[:-1],  # missing closing brace
        PLAIN.replace('"customer": ', "customer: "),  # unquoted key
        PLAIN.replace("null", "None")[:-1] + ", }",  # Python literals
        "```json\n" + PLAIN[:-1] + ",}\n```",  # fenced and malformed
    ],
)
def test_malformed_json_is_repaired_locally(text: str) -> None:
    outcome = parse_output(text)
    assert outcome.kind == "json"
    assert "json_repair" in outcome.fixes and outcome.repaired
    assert validate(Ticket, outcome.data) == Ticket.model_validate(VALID_TICKET)


def test_malformed_json_after_braces_in_prose_repairs_the_longest_part() -> None:
    outcome = parse_output(f"Fields {{a}} follow: {PLAIN[:-1]},}}")
    assert outcome.kind == "json" and outcome.fixes == ("prose", "json_repair")
    assert outcome.data == VALID_TICKET


def test_truncated_json_is_completed_but_must_still_validate() -> None:
    cut = PLAIN[: PLAIN.index('"priority"')]  # customer and email only
    outcome = parse_output(cut)
    assert outcome.kind == "json" and outcome.repaired
    assert outcome.data == {"customer": "Ada Lovelace", "email": "ada@example.com"}
    with pytest.raises(ValidationError) as info:
        validate(Ticket, outcome.data)
    assert {e["loc"][0] for e in info.value.errors()} == {"priority", "category"}


@pytest.mark.parametrize(
    "text",
    [
        '{\n  "customer": "Ada",\n  "email": "[truncated]",\n  // ... rest of fields\n}',
        '{"code": "def f():\\n    // ... rest of code"}',
        '{"tags": ["a", "b", ...]}',
        '{"tags": ["a", "b", "etc."]}',
        '{"customer": "..."}',
        '{"customer": "<rest of the name>"}',
        '{"notes": "first line ... (rest omitted here)"}',
    ],
)
def test_lazy_answers_are_recognised(text: str) -> None:
    outcome = parse_output(text)
    assert outcome.kind == "lazy", outcome
    assert outcome.lazy_markers and "placeholders" in (outcome.reason or "")


@pytest.mark.parametrize(
    "text",
    [
        '{"url": "https://example.com/more/rest"}',
        '{"quote": "To be, or not to be..."}',
        '{"notes": "and so on, said the clerk"}',
        '{"tags": ["etcetera"]}',
    ],
)
def test_ordinary_values_are_not_lazy(text: str) -> None:
    assert parse_output(text).kind == "json"


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with that.",
        "I cannot assist with this request.",
        "I\u2019m unable to extract personal data.",
        "As an AI, I won't do that.",
    ],
)
def test_refusal_text_without_json_is_a_refusal(text: str) -> None:
    outcome = parse_output(text)
    assert outcome.kind == "refusal" and text[:10] in (outcome.reason or "")


def test_refusal_field_wins_over_content() -> None:
    result = ChatResult(content=None, refusal="I can't help with that.", finish_reason="stop")
    outcome = parse_result(result)
    assert outcome.kind == "refusal" and outcome.text == "I can't help with that."


def test_an_apology_with_json_is_still_json() -> None:
    outcome = parse_output(f"Sorry for the delay, I cannot be sure but: {PLAIN}")
    assert outcome.kind == "json" and outcome.data == VALID_TICKET


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        (None, "empty"),
        ("no json here", "no_json"),
        ("42", "no_json"),
        ('"just a string"', "no_json"),
    ],
)
def test_answers_without_json(text: str | None, kind: str) -> None:
    outcome = parse_output(text)
    assert outcome.kind == kind and outcome.data is None and outcome.reason


def test_tool_call_arguments_are_parsed_before_content() -> None:
    result = ChatResult(
        content="ignored prose",
        tool_calls=[ToolCall(id="call_1", name="Ticket", arguments=PLAIN)],
        finish_reason="tool_calls",
    )
    outcome = parse_result(result)
    assert outcome.kind == "json" and outcome.data == VALID_TICKET


def test_validate_runs_custom_validators_and_drops_null_defaults() -> None:
    value = validate(Ticket, {**VALID_TICKET, "tags": None, "retries": None})
    assert value.tags == [] and value.retries == 0
    with pytest.raises(ValidationError, match="containing '@'"):
        validate(Ticket, {**VALID_TICKET, "email": "nobody"})
    with pytest.raises(ValidationError, match="needs an amount"):
        validate(Ticket, {**VALID_TICKET, "amount": None})
    # nested models: a null for a nullable-by-default field stays null
    value = validate(Ticket, {**VALID_TICKET, "address": {"city": "Oslo", "zip": None}})
    assert value.address is not None and value.address.zip is None
