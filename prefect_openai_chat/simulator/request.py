"""Parse and validate a chat completion request body the way the real API does (400s, never 500s).

Example:
    >>> from prefect_openai_chat.simulator.request import parse_chat_request
    >>> parse_chat_request(b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}').n
    1
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from prefect_openai_chat.simulator.errors import (
    SimError,
    invalid_type,
    invalid_value,
    missing,
)
from prefect_openai_chat.tokens.roles import INSTRUCTION_ROLES, ROLES

_ROLE_LIST = "'system', 'assistant', 'user', 'function', 'tool', and 'developer'"


@dataclass(frozen=True)
class ChatRequest:
    """The parts of a chat completion request the simulator acts on."""

    body: dict[str, Any]
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    n: int
    max_tokens: int | None
    response_format: dict[str, Any] | None
    tools: list[dict[str, Any]] | None
    tool_choice: Any


def parse_chat_request(raw: bytes) -> ChatRequest:
    """Decode and check `raw`; raise `SimError` (400) naming the faulty parameter."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise SimError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON. If you have trouble figuring out how to fix "
            "this, please contact us through our help center at help.openai.com.)",
        ) from None
    if not isinstance(body, dict):
        raise invalid_type("body", "an object", body)
    model = body.get("model")
    if model is None:
        raise SimError(400, "you must provide a model parameter", param="model")
    if not isinstance(model, str):
        raise invalid_type("model", "a string", model)
    messages = _check_messages(body)
    stream = _check_type(body, "stream", bool, "a boolean", False)
    stream_options = _check_type(body, "stream_options", dict, "an object", None)
    include_usage = bool(stream_options and stream_options.get("include_usage"))
    if stream_options is not None and not stream:
        raise invalid_value(
            "stream_options",
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        )
    n = _check_int(body, "n", 1, 128, 1)
    max_tokens = _check_int(body, "max_completion_tokens", 1, None, None)
    if max_tokens is None:
        max_tokens = _check_int(body, "max_tokens", 1, None, None)
    _check_number(body, "temperature", 0.0, 2.0)
    _check_number(body, "top_p", 0.0, 1.0)
    response_format = _check_response_format(body)
    tools = _check_tools(body)
    tool_choice = _check_tool_choice(body, tools)
    if (
        response_format
        and response_format["type"] == "json_object"
        and not any("json" in _text_of(m).lower() for m in messages)
    ):
        raise SimError(
            400,
            "'messages' must contain the word 'json' in some form, to use 'response_format' "
            "of type 'json_object'.",
            param="messages",
        )
    return ChatRequest(
        body=body,
        model=model,
        messages=messages,
        stream=stream,
        include_usage=include_usage,
        n=n,
        max_tokens=max_tokens,
        response_format=response_format,
        tools=tools,
        tool_choice=tool_choice,
    )


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _check_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    if "messages" not in body:
        raise missing("messages")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise invalid_type("messages", "an array", messages)
    if not messages:
        raise SimError(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got "
            "an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise invalid_type(where, "an object", message)
        if "role" not in message:
            raise missing(f"{where}.role")
        role = message["role"]
        if role not in ROLES:
            raise invalid_value(
                f"{where}.role",
                f"Invalid value: '{role}'. Supported values are: {_ROLE_LIST}.",
            )
        content = message.get("content")
        if content is None:
            if (
                role == "user"
                or role in INSTRUCTION_ROLES
                or role == "tool"
                or (
                    role == "assistant"
                    and not message.get("tool_calls")
                    and "refusal" not in message
                )
            ):
                raise missing(f"{where}.content")
        elif not isinstance(content, (str, list)):
            raise invalid_type(f"{where}.content", "one of a string or array of objects", content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise invalid_type(f"{where}.content[{j}]", "an object with a type", part)
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise missing(f"{where}.tool_call_id")
        if "name" in message and not isinstance(message["name"], str):
            raise invalid_type(f"{where}.name", "a string", message["name"])
    return messages


def _check_type(body: dict[str, Any], key: str, kind: type, expected: str, default: Any) -> Any:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise invalid_type(key, expected, value)
    return value


def _check_int(body: dict[str, Any], key: str, low: int, high: int | None, default: Any) -> Any:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_type(key, "an integer", value)
    if value < low:
        raise SimError(
            400,
            f"Invalid '{key}': integer below minimum value. Expected a value >= {low}, but got "
            f"{value} instead.",
            param=key,
            code="integer_below_min_value",
        )
    if high is not None and value > high:
        raise SimError(
            400,
            f"Invalid '{key}': integer above maximum value. Expected a value <= {high}, but got "
            f"{value} instead.",
            param=key,
            code="integer_above_max_value",
        )
    return value


def _check_number(body: dict[str, Any], key: str, low: float, high: float) -> None:
    value = body.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid_type(key, "a number", value)
    if not low <= value <= high:
        raise SimError(
            400,
            f"Invalid '{key}': decimal out of range. Expected a value between {low} and {high}, "
            f"but got {value} instead.",
            param=key,
            code="decimal_out_of_range",
        )


def _check_response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = _check_type(body, "response_format", dict, "an object", None)
    if fmt is None:
        return None
    kind = fmt.get("type")
    if kind is None:
        raise missing("response_format.type")
    if kind not in ("text", "json_object", "json_schema"):
        raise invalid_value(
            "response_format.type",
            f"Invalid value: '{kind}'. Supported values are: 'json_object', 'json_schema', "
            "and 'text'.",
        )
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if spec is None:
            raise missing("response_format.json_schema")
        if not isinstance(spec, dict):
            raise invalid_type("response_format.json_schema", "an object", spec)
        if not isinstance(spec.get("name"), str):
            raise missing("response_format.json_schema.name")
        if "schema" in spec and not isinstance(spec["schema"], dict):
            raise invalid_type("response_format.json_schema.schema", "an object", spec["schema"])
    return None if kind == "text" else fmt


def _check_tools(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    tools = _check_type(body, "tools", list, "an array", None)
    if tools is None:
        return None
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise invalid_type(f"tools[{i}]", "an object", tool)
        if tool.get("type") != "function":
            raise invalid_value(f"tools[{i}].type", "Invalid value: only 'function' is supported.")
        function = tool.get("function")
        if not isinstance(function, dict):
            raise missing(f"tools[{i}].function")
        if not isinstance(function.get("name"), str):
            raise missing(f"tools[{i}].function.name")
        params = function.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise invalid_type(f"tools[{i}].function.parameters", "an object", params)
    checked: list[dict[str, Any]] = tools
    return checked


def _check_tool_choice(body: dict[str, Any], tools: list[dict[str, Any]] | None) -> Any:
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise invalid_value(
                "tool_choice",
                f"Invalid value: '{choice}'. Supported values are: 'none', 'auto', and 'required'.",
            )
        if choice == "required" and not tools:
            raise invalid_value(
                "tool_choice",
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed "
                "when 'tools' are specified.",
            )
        return choice
    if not isinstance(choice, dict):
        raise invalid_type("tool_choice", "a string or an object", choice)
    name = (
        (choice.get("function") or {}).get("name")
        if isinstance(choice.get("function"), dict)
        else None
    )
    if not isinstance(name, str):
        raise missing("tool_choice.function.name")
    names = [t["function"]["name"] for t in tools or []]
    if name not in names:
        raise invalid_value(
            "tool_choice",
            f"Invalid value for 'tool_choice': tool choice '{name}' not found in 'tools' "
            "parameter.",
        )
    return choice
