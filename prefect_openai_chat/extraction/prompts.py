"""Build the messages and request parameters of one extraction call, per mode.

Modes: `json_schema` (structured outputs, strict where the schema allows),
`json_object` (JSON mode, with the schema in the system message), `tools` (a
forced function call) and `auto` (`json_schema` on models that support
structured outputs, else `json_object`).

Example:
    >>> from pydantic import BaseModel
    >>> class City(BaseModel):
    ...     name: str
    >>> messages, params = build_request(City, "I live in Oslo.", model="gpt-3.5-turbo")
    >>> [m["role"] for m in messages], params["response_format"]
    (['system', 'user'], {'type': 'json_object'})
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

from pydantic import BaseModel

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction.schema import (
    ensure_model,
    response_format,
    schema_spec,
    schema_text,
    tool_definition,
)
from prefect_openai_chat.surrogates import escape_surrogates
from prefect_openai_chat.tokens.models import supports_structured_outputs
from prefect_openai_chat.tokens.roles import INSTRUCTION_ROLES, ROLES

Mode = Literal["auto", "json_schema", "json_object", "tools"]
ConcreteMode = Literal["json_schema", "json_object", "tools"]
MODES: tuple[str, ...] = ("auto", "json_schema", "json_object", "tools")
# Part of every ledger key: bump when a change to the texts below could change an answer
# (what is asked). A change of form that asks the same (fewer tokens for the same request,
# as the compact texts of version "1" after issue 26) keeps it: a ledger's records stay
# answered, and an upgrade does not pay for them again.
PROMPT_VERSION = "1"

DEFAULT_INSTRUCTIONS = (
    "Extract the requested data from the user's text. Use only what the text says;"
    " where the text does not give a value and the schema allows null, use null."
)
_TEXT = {  # strict `json_schema` needs no line: the API holds the answer to the schema
    "json_schema": "Answer with the complete JSON object for the `{name}` schema.",
    "tools": "Call the function `{name}` once, with the complete extracted data as arguments.",
    "json_object": (
        "Answer with one complete JSON object only, with no prose and no code fences."
        " It must match this JSON schema:\n{schema}"
    ),
}

_PARTIAL_TEXT = {
    "json_schema": "",  # the response format and the correction say it all
    "tools": "",
    "json_object": (
        "Answer with one JSON object only, no prose, no code fences, matching:\n{schema}"
    ),
}

TextOrMessages = str | Sequence[Mapping[str, Any]]


def supports_prompt_cache_key(model: str) -> bool:
    """True when `model` is an OpenAI model that takes the `prompt_cache_key` parameter.

    Example:
        >>> supports_prompt_cache_key("gpt-4o-mini"), supports_prompt_cache_key("llama3")
        (True, False)
    """
    name = model.split("/")[-1].lower()
    return name.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4"))


def prompt_cache_key(system: str, params: Mapping[str, Any]) -> str:
    """A stable key naming the constant part of a request (instructions, schema, mode).

    Requests that share it share a long prefix, so the API routes them to the same
    prompt cache; the record itself comes last in the messages and is not part of it.

    Example:
        >>> prompt_cache_key("Extract.", {"response_format": {"type": "json_object"}})[:4]
        'poc-'
    """
    blob = json.dumps([system, params], sort_keys=True, ensure_ascii=False, default=str)
    return "poc-" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def resolve_mode(mode: str, model: str) -> ConcreteMode:
    """The concrete mode for `mode` (resolving `auto` for `model`), or `InvalidInputError`."""
    if mode not in MODES:
        raise InvalidInputError(
            f"mode must be one of {', '.join(repr(m) for m in MODES)}, got {mode!r}"
        )
    if mode == "auto":
        return "json_schema" if supports_structured_outputs(model) else "json_object"
    return cast(ConcreteMode, mode)


def system_text(
    schema: type[BaseModel],
    mode: ConcreteMode,
    instructions: str | None,
    texts: Mapping[str, str] = _TEXT,
) -> str:
    """The system text for `mode`: the instructions, then how to answer.

    With strict structured outputs (`json_schema` on a schema the API can enforce) the
    instructions stand alone: the response format already says what to answer, and a
    line saying it again would be paid for in every request.

    Example:
        >>> from pydantic import BaseModel
        >>> class City(BaseModel):
        ...     name: str
        >>> system_text(City, "json_schema", "Find the city.")
        'Find the city.'
        >>> print(system_text(City, "tools", "Find the city."))
        Find the city.
        <BLANKLINE>
        Call the function `City` once, with the complete extracted data as arguments.
    """
    spec = schema_spec(schema)
    if mode == "json_schema" and spec.strict:
        how = ""
    else:
        how = texts[mode].format(
            name=spec.name, schema=schema_text(schema) if mode == "json_object" else ""
        )
    told = (instructions or DEFAULT_INSTRUCTIONS).strip()
    return f"{told}\n\n{how}" if how else told


def build_request(
    schema: type[BaseModel],
    text_or_messages: TextOrMessages,
    instructions: str | None = None,
    mode: str = "auto",
    *,
    model: str,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Messages and request params (`response_format` or `tools`/`tool_choice`) for one call.

    A text becomes `[system, user]`. Messages are copied, never changed: the
    extraction's system text joins the caller's first system message, or comes
    first when there is none.

    Args:
        schema: The pydantic model to extract.
        text_or_messages: The record's text, or chat messages that contain it.
        instructions: What to extract and how; a sensible default otherwise.
        mode: "auto", "json_schema", "json_object" or "tools".
        model: The model name, which decides what "auto" means.

    Returns:
        `(messages, params)`, both new objects.

    Example:
        >>> from pydantic import BaseModel
        >>> class City(BaseModel):
        ...     name: str
        >>> _, params = build_request(City, "Oslo", mode="tools", model="gpt-4o-mini")
        >>> params["tool_choice"]
        {'type': 'function', 'function': {'name': 'City'}}
    """
    model_cls = ensure_model(schema)
    concrete = resolve_mode(mode, model)
    system = system_text(model_cls, concrete, instructions)
    messages = _messages(text_or_messages, system)
    params = _mode_params(model_cls, concrete)
    if supports_prompt_cache_key(model):  # the constant part comes first: make it one cache
        params["prompt_cache_key"] = _prefix_key(model_cls, concrete, instructions)
    return messages, params


def build_record_request(
    schema: type[BaseModel],
    text_or_messages: TextOrMessages,
    instructions: str | None = None,
    mode: str = "auto",
    *,
    model: str,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`build_request` for the extraction engine, without rebuilding what every record shares.

    The messages list, each message and the params dict are new, as from `build_request`;
    the `response_format` (or `tools` and `tool_choice`) inside the params is one object
    per schema and mode, shared by every request and never changed: the engine and the
    sender only read it (the SDK serializes it). A text costs a user message, not a fresh
    copy of the schema.

    Example:
        >>> from pydantic import BaseModel
        >>> class City(BaseModel):
        ...     name: str
        >>> build_record_request(City, "Oslo", model="gpt-4o-mini") == build_request(
        ...     City, "Oslo", model="gpt-4o-mini")
        True
    """
    if not isinstance(text_or_messages, str) or not text_or_messages.strip():
        return build_request(schema, text_or_messages, instructions, mode, model=model)
    system, params = _shared_parts(ensure_model(schema), mode, instructions, model)
    return [dict(system), {"role": "user", "content": text_or_messages}], dict(params)


@functools.lru_cache(maxsize=256)  # bounded: its keys hold the schema class
def _shared_parts(
    model_cls: type[BaseModel], mode: str, instructions: str | None, model: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The system message and params `build_request` makes for a text, made once (read-only)."""
    messages, params = build_request(model_cls, "-", instructions, mode, model=model)
    return messages[0], params


def build_partial_request(
    subset: type[BaseModel],
    text_or_messages: TextOrMessages,
    wrong: Mapping[str, Any],
    correction: str,
    instructions: str | None = None,
    mode: str = "auto",
    *,
    model: str,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Messages and params of a re-ask for some fields only (`subset`, a model of them).

    The record is sent again as in the first request, with the instructions; then ONE
    assistant message with the invalid values only (`wrong`) and ONE user message saying
    what to fix (`correction`). The first answer's valid fields are not repeated, nor is
    the whole schema: `subset` is what the answer must match.

    Example:
        >>> from pydantic import BaseModel
        >>> class Status(BaseModel):
        ...     status: str
        >>> messages, params = build_partial_request(
        ...     Status, "Ticket 7 is closed.", {"status": 7}, "status: must be a string",
        ...     model="gpt-4o-mini")
        >>> [m["role"] for m in messages], params["response_format"]["json_schema"]["name"]
        (['system', 'user', 'assistant', 'user'], 'Status')
    """
    concrete = resolve_mode(mode, model)
    system = system_text(subset, concrete, instructions, _PARTIAL_TEXT)
    messages = _messages(text_or_messages, system)
    shown = json.dumps(wrong, ensure_ascii=False, separators=(",", ":"))
    messages.append({"role": "assistant", "content": escape_surrogates(shown)})
    messages.append({"role": "user", "content": escape_surrogates(correction)})
    params = _mode_params(subset, concrete)
    if supports_prompt_cache_key(model):
        params["prompt_cache_key"] = prompt_cache_key(system, params)
    return messages, params


def _mode_params(model_cls: type[BaseModel], concrete: ConcreteMode) -> dict[str, Any]:
    """The request parameters that ask for `concrete` structured output (a new dict)."""
    if concrete == "json_schema":
        return {"response_format": response_format(model_cls)}
    if concrete == "json_object":
        return {"response_format": {"type": "json_object"}}
    tools, tool_choice = tool_definition(model_cls)
    return {"tools": tools, "tool_choice": tool_choice}


@functools.lru_cache(maxsize=256)  # bounded: its keys hold the schema class
def _prefix_key(
    model_cls: type[BaseModel], concrete: ConcreteMode, instructions: str | None
) -> str:
    """`prompt_cache_key` of a schema, mode and instructions: hashed once, not per record."""
    system = system_text(model_cls, concrete, instructions)
    return prompt_cache_key(system, _mode_params(model_cls, concrete))


def _messages(text_or_messages: TextOrMessages, system: str) -> list[dict[str, Any]]:
    if isinstance(text_or_messages, str):
        if not text_or_messages.strip():
            raise InvalidInputError("the text to extract from is empty; pass a non-empty string")
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": text_or_messages},
        ]
    if not isinstance(text_or_messages, Sequence) or not text_or_messages:
        raise InvalidInputError(
            "text_or_messages must be a non-empty string or a non-empty list of chat messages"
            f" ({{'role': ..., 'content': ...}}), got {type(text_or_messages).__name__}"
        )
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(text_or_messages):
        if not isinstance(message, Mapping) or message.get("role") not in ROLES:
            raise InvalidInputError(
                f"message {i} must be a dict with a 'role' among {sorted(ROLES)},"
                f" got {message!r:.80}"
            )
        messages.append(copy.deepcopy(dict(message)))
    if not any(m["role"] == "user" and _has_text(m.get("content")) for m in messages):
        raise InvalidInputError("the messages contain no user message with text to extract from")
    first = messages[0]
    if first["role"] in INSTRUCTION_ROLES and isinstance(first.get("content"), str):
        first["content"] = f"{first['content'].rstrip()}\n\n{system}"
    else:
        messages.insert(0, {"role": "system", "content": system})
    return messages


def _has_text(content: Any) -> bool:
    if isinstance(content, str):
        return bool(content.strip())
    if isinstance(content, list):
        return any(
            isinstance(part, Mapping) and str(part.get("text") or "").strip() for part in content
        )
    return False
