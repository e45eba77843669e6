"""Strict JSON schemas, response formats, tool definitions and schema text."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from extraction_models import VALID_TICKET, Address, FreeForm, Person, Ticket
from pydantic import BaseModel, Field

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction import (
    response_format,
    schema_spec,
    schema_text,
    tool_definition,
    validate,
)
from prefect_openai_chat.extraction.schema import NotStrictError, to_strict_schema, without_titles
from prefect_openai_chat.tokens import count_text_tokens

ALLOWED = {
    "type", "description", "enum", "const", "anyOf", "$ref", "$defs", "properties",
    "required", "additionalProperties", "items", "pattern", "format", "multipleOf",
    "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "minItems", "maxItems",
}  # fmt: skip


def _nodes(node: Any) -> list[dict[str, Any]]:
    """Every schema node (not property-name maps) in a JSON schema."""
    out: list[dict[str, Any]] = []
    if not isinstance(node, dict):
        return out
    out.append(node)
    for key in ("properties", "$defs"):
        for sub in (node.get(key) or {}).values():
            out.extend(_nodes(sub))
    for sub in node.get("anyOf") or []:
        out.extend(_nodes(sub))
    if isinstance(node.get("items"), dict):
        out.extend(_nodes(node["items"]))
    return out


def test_strict_schema_closes_every_object_and_requires_every_property() -> None:
    spec = schema_spec(Ticket)
    assert spec.strict and spec.not_strict_reason is None
    objects = [n for n in _nodes(spec.json_schema) if n.get("type") == "object"]
    assert len(objects) >= 2  # Ticket and Address
    for node in objects:
        assert node["additionalProperties"] is False
        assert node["required"] == list(node["properties"])
    for node in _nodes(spec.json_schema):
        assert set(node) <= ALLOWED, set(node) - ALLOWED


def test_optional_fields_become_nullable_and_dropped_constraints_become_hints() -> None:
    props = schema_spec(Ticket).json_schema["properties"]
    # a defaulted, non-nullable field: anyOf [..., null], description kept on the outside
    assert props["retries"]["anyOf"] == [{"type": "integer"}, {"type": "null"}]
    assert props["tags"]["anyOf"][1] == {"type": "null"}
    # already nullable: not wrapped twice
    assert props["amount"]["anyOf"] == [{"type": "number"}, {"type": "null"}]
    # maxLength is not accepted in strict mode: it moves into the description
    assert "maxLength" not in props["customer"]
    assert props["customer"]["description"] == "The customer's full name. (maxLength: 80)"
    # the original schema is untouched
    assert schema_spec(Ticket).original["properties"]["customer"]["maxLength"] == 80


def test_strict_schema_accepts_what_the_model_dumps_and_nulls_validate_back() -> None:
    strict = schema_spec(Ticket).json_schema
    ticket = Ticket.model_validate(VALID_TICKET)
    jsonschema.validate(ticket.model_dump(mode="json"), strict)
    # a strict answer says null for the optional fields: defaults apply again
    answer = {**VALID_TICKET, "tags": None, "retries": None}
    jsonschema.validate(answer, strict)
    value = validate(Ticket, answer)
    assert value.tags == [] and value.retries == 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**VALID_TICKET, "unexpected": 1}, strict)


def test_a_schema_that_cannot_be_strict_says_why_and_keeps_the_original() -> None:
    spec = schema_spec(FreeForm)
    assert spec.strict is False
    assert "free-form mapping" in (spec.not_strict_reason or "")
    assert spec.json_schema == FreeForm.model_json_schema()
    assert response_format(FreeForm)["json_schema"]["strict"] is False


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        ({"type": "array", "items": {"type": "string"}}, "root"),
        ({"type": "object", "properties": {"a": {}}}, "any value"),
        ({"type": "object", "properties": {"a": {"type": "string", "not": {}}}}, "'not'"),
        ({"type": "object", "properties": {"a": {"allOf": [{"type": "string"}, {}]}}}, "allOf"),
        ({"type": "object", "properties": {"a": {"type": "array", "prefixItems": []}}}, "prefix"),
    ],
)
def test_unsupported_constructs_are_named(schema: dict[str, Any], reason: str) -> None:
    with pytest.raises(NotStrictError, match=reason):
        to_strict_schema(schema)


def test_deep_nesting_is_not_strict() -> None:
    node: dict[str, Any] = {"type": "string"}
    for _ in range(12):
        node = {"type": "object", "properties": {"x": node}, "required": ["x"]}
    with pytest.raises(NotStrictError, match="nested"):
        to_strict_schema(node)


def test_ref_with_sibling_keywords_is_inlined() -> None:
    class Holder(BaseModel):
        home: Address = Address(city="x")

    props = schema_spec(Holder).json_schema["properties"]
    # `home` had a default, so it becomes nullable; its object is inlined and closed
    inner = props["home"]["anyOf"][0]
    assert "$ref" not in inner and "default" not in props["home"]
    assert inner["additionalProperties"] is False and inner["required"] == ["city", "zip"]


def test_response_format_and_tool_definition_are_fresh_dicts() -> None:
    rf = response_format(Person)
    assert rf["type"] == "json_schema"
    assert rf["json_schema"]["name"] == "Person"
    assert rf["json_schema"]["strict"] is True
    assert rf["json_schema"]["description"] == "A person named in a text."
    rf["json_schema"]["schema"]["properties"].clear()  # a caller changing its copy...
    assert response_format(Person)["json_schema"]["schema"]["properties"]  # ...changes nothing

    tools, choice = tool_definition(Person)
    assert choice == {"type": "function", "function": {"name": "Person"}}
    function = tools[0]["function"]
    assert tools[0]["type"] == "function"
    assert function["name"] == "Person" and function["strict"] is True
    assert function["parameters"]["required"] == ["name", "age", "email"]


def test_schema_text_is_the_original_schema_compact_and_without_titles() -> None:
    text = schema_text(Ticket)
    assert json.loads(text) == without_titles(Ticket.model_json_schema())
    assert "\n" not in text and '"title"' not in text
    pretty = json.dumps(Ticket.model_json_schema(), indent=2)
    assert count_text_tokens(text, "gpt-4o-mini") < 0.7 * count_text_tokens(pretty, "gpt-4o-mini")


def test_without_titles_keeps_names_and_data_called_title() -> None:
    class Book(BaseModel):
        title: str = Field(default="Untitled", title="The title")
        meta: dict[str, str] = Field(default={"title": "kept"})

    lean = without_titles(Book.model_json_schema())
    assert lean["properties"]["title"] == {"default": "Untitled", "type": "string"}
    assert lean["properties"]["meta"]["default"] == {"title": "kept"}
    assert "title" not in lean


@pytest.mark.parametrize("bad", [dict, "Ticket", Ticket(**VALID_TICKET), None])
def test_a_non_pydantic_schema_is_a_clear_error(bad: Any) -> None:
    with pytest.raises(InvalidInputError, match="pydantic model class"):
        schema_spec(bad)
