"""Exact prompt-token counting for chat completion requests, offline.

`count_message_tokens` returns what the API reports as `usage.prompt_tokens`:
3 tokens per message, 1 more per `name`, 3 to prime the reply, plus the
overhead of tool definitions as the API renders them.

Example:
    >>> from prefect_openai_chat.tokens import count_message_tokens
    >>> count_message_tokens([{"role": "user", "content": "Hello"}], "gpt-4o-mini")
    8
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prefect_openai_chat.tokens.encodings import get_encoding
from prefect_openai_chat.tokens.models import model_info

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMER = 3

# Tool definitions, as the API renders them (OpenAI cookbook, verified against usage).
_PROP_INIT = 3
_PROP_KEY = 3
_ENUM_INIT = -3
_ENUM_ITEM = 3
_FUNC_END = 12


def count_text_tokens(text: str, model: str) -> int:
    """Tokens in `text` for `model`'s encoding; special-token text counts as plain text."""
    return len(get_encoding(model_info(model).encoding).encode_ordinary(text))


def count_message_tokens(
    messages: Sequence[Mapping[str, Any]],
    model: str,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> int:
    """Return the `usage.prompt_tokens` the API reports for `messages` (and `tools`)."""
    info = model_info(model)
    encode = get_encoding(info.encoding).encode_ordinary
    total = REPLY_PRIMER
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if isinstance(value, str):  # the common case, without the generator below
                total += len(encode(value))
            elif value is not None:
                for text in _texts(key, value):
                    total += len(encode(text))
            else:
                continue
            if key == "name":
                total += TOKENS_PER_NAME
    if tools:
        total += _count_tools(tools, encode, info.tool_function_init)
    return total


def _texts(key: str, value: Any) -> Iterable[str]:
    """The strings of one message field that the API tokenizes."""
    if isinstance(value, str):
        yield value
    elif key == "content" and isinstance(value, list):
        for part in value:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                yield part["text"]
            elif isinstance(part, str):
                yield part
    elif key == "tool_calls" and isinstance(value, list):
        for call in value:
            function = call.get("function", {}) if isinstance(call, Mapping) else {}
            yield str(function.get("name", ""))
            yield str(function.get("arguments", ""))
    elif key == "function_call" and isinstance(value, Mapping):
        yield str(value.get("name", ""))
        yield str(value.get("arguments", ""))


def _count_tools(tools: Sequence[Mapping[str, Any]], encode: Any, func_init: int) -> int:
    total = 0
    for tool in tools:
        function = tool.get("function", tool)
        total += func_init
        description = _strip_period(str(function.get("description") or ""))
        total += len(encode(f"{function.get('name', '')}:{description}"))
        properties = (function.get("parameters") or {}).get("properties") or {}
        if properties:
            total += _PROP_INIT
            for key, schema in properties.items():
                total += _PROP_KEY
                if "enum" in schema:
                    total += _ENUM_INIT
                    for item in schema["enum"]:
                        total += _ENUM_ITEM + len(encode(str(item)))
                p_desc = _strip_period(str(schema.get("description") or ""))
                total += len(encode(f"{key}:{schema.get('type', '')}:{p_desc}"))
    if tools:
        total += _FUNC_END
    return total


def _strip_period(text: str) -> str:
    return text[:-1] if text.endswith(".") else text
