"""Request building per mode, `auto` resolution, and bad input."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from extraction_models import PERSON_TEXT, Person, Ticket
from pydantic import BaseModel

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction import build_request, resolve_mode, supports_structured_outputs
from prefect_openai_chat.extraction.prompts import DEFAULT_INSTRUCTIONS, build_record_request
from prefect_openai_chat.extraction.schema import without_titles


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o-2024-08-06", True),
        ("gpt-4o-2024-11-20", True),
        ("gpt-4o", True),
        ("gpt-4o-2024-05-13", False),
        ("gpt-4o-mini", True),
        ("gpt-4o-mini-2024-07-18", True),
        ("gpt-4.1-nano", True),
        ("o1", True),
        ("o1-mini", False),
        ("o3-mini", True),
        ("o4-mini", True),
        ("gpt-5-mini", True),
        ("openai/gpt-4.1", True),
        ("gpt-4-turbo", False),
        ("gpt-3.5-turbo", False),
        ("llama3.1:8b", False),
    ],
)
def test_structured_output_support(model: str, expected: bool) -> None:
    assert supports_structured_outputs(model) is expected
    assert resolve_mode("auto", model) == ("json_schema" if expected else "json_object")


def test_json_schema_mode() -> None:
    messages, params = build_request(Person, PERSON_TEXT, mode="auto", model="gpt-4o-mini")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == PERSON_TEXT
    assert set(params) == {"response_format", "prompt_cache_key"}  # OpenAI: one cache key
    assert params["response_format"]["json_schema"]["strict"] is True
    # strict structured outputs: the instructions alone, no line repeating the format
    assert messages[0]["content"] == DEFAULT_INSTRUCTIONS


def test_a_schema_that_cannot_be_strict_is_told_what_to_answer() -> None:
    class Loose(BaseModel):
        name: str
        extra: dict[str, int]

    messages, params = build_request(Loose, "Oslo", mode="json_schema", model="gpt-4o-mini")
    assert params["response_format"]["json_schema"]["strict"] is False
    assert messages[0]["content"].endswith("JSON object for the `Loose` schema.")


def test_json_object_mode_puts_the_schema_and_the_word_json_in_the_system_message() -> None:
    messages, params = build_request(
        Ticket, "text", "Extract the ticket.", "json_object", model="x"
    )
    assert params == {"response_format": {"type": "json_object"}}
    system = messages[0]["content"]
    assert system.startswith("Extract the ticket.")
    assert "JSON" in system
    schema_part = system[system.index("{") :]
    assert json.loads(schema_part) == without_titles(Ticket.model_json_schema())
    assert "\n" not in schema_part and '"title"' not in schema_part  # compact: fewer tokens


def test_tools_mode_forces_the_function_call() -> None:
    messages, params = build_request(Person, PERSON_TEXT, mode="tools", model="gpt-4o-mini")
    assert set(params) == {"tools", "tool_choice", "prompt_cache_key"}
    assert params["tool_choice"]["function"]["name"] == "Person"
    assert params["tools"][0]["function"]["parameters"]["additionalProperties"] is False
    assert "`Person`" in messages[0]["content"]


def test_caller_messages_are_copied_never_changed() -> None:
    caller: list[dict[str, Any]] = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": PERSON_TEXT}]},
    ]
    before = copy.deepcopy(caller)
    messages, _ = build_request(Person, caller, mode="json_object", model="gpt-4o-mini")
    assert caller == before
    assert messages is not caller and messages[0] is not caller[0]
    assert messages[1]["content"] is not caller[1]["content"]
    assert len(messages) == 2
    assert messages[0]["content"].startswith("You are terse.\n\n")
    assert "JSON" in messages[0]["content"]


def test_messages_without_a_system_message_get_one_first() -> None:
    caller = [{"role": "user", "content": PERSON_TEXT}]
    messages, _ = build_request(Person, caller, model="gpt-4o-mini")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert caller == [{"role": "user", "content": PERSON_TEXT}]


@pytest.mark.parametrize(
    ("text_or_messages", "mode", "match"),
    [
        ("   ", "auto", "empty"),
        ("", "auto", "empty"),
        ([], "auto", "non-empty"),
        ([{"role": "system", "content": "x"}], "auto", "no user message"),
        ([{"role": "user", "content": "  "}], "auto", "no user message"),
        ([{"content": "hi"}], "auto", "'role'"),
        (["hi"], "auto", "'role'"),
        ("text", "json", "mode must be one of"),
        ("text", "JSON_SCHEMA", "mode must be one of"),
    ],
)
def test_bad_input_is_a_clear_error(text_or_messages: Any, mode: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        build_request(Person, text_or_messages, mode=mode, model="gpt-4o-mini")


def test_non_pydantic_schema_is_rejected_before_anything_else() -> None:
    with pytest.raises(InvalidInputError, match="pydantic"):
        build_request(dict, "text", model="gpt-4o-mini")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["json_schema", "json_object", "tools"])
def test_the_engine_request_is_build_request_with_the_schema_built_once(mode: str) -> None:
    first = build_record_request(Person, PERSON_TEXT, "Be brief.", mode, model="gpt-4o-mini")
    again = build_record_request(Person, "another text", "Be brief.", mode, model="gpt-4o-mini")
    assert first == build_request(Person, PERSON_TEXT, "Be brief.", mode, model="gpt-4o-mini")
    assert first[0] is not again[0] and first[1] is not again[1]  # new lists and dicts
    assert first[0][0] is not again[0][0]  # and new messages
    if mode == "json_schema":  # the schema itself is shared, read-only
        assert first[1]["response_format"] is again[1]["response_format"]
    with pytest.raises(InvalidInputError):
        build_record_request(Person, "  ", mode=mode, model="gpt-4o-mini")
