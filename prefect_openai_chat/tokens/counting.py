"""Exact prompt-token counting for chat completion requests, offline.

`count_message_tokens` returns what the API reports as `usage.prompt_tokens`:
3 tokens per message, 1 more per `name`, 3 to prime the reply, plus the
overhead of tool definitions as the API renders them, and of a `json_schema`
response format (the API shows the model its schema, and bills it).
`count_request_tokens` does the same for a whole request body.

Example:
    >>> from prefect_openai_chat.tokens import count_message_tokens
    >>> count_message_tokens([{"role": "user", "content": "Hello"}], "gpt-4o-mini")
    8
"""

from __future__ import annotations

import functools
import json
import threading
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
# A `json_schema` response format, as users measured it against `usage`
# (openai-cookbook#2140; OpenAI does not document it): the schema as compact JSON
# without its `required`, `additionalProperties` and `$schema` keywords, plus 9.
_FORMAT_INIT = 9
_UNBILLED_KEYWORDS = frozenset({"required", "additionalProperties", "$schema"})
_NAMED_CHILDREN = frozenset({"properties", "$defs", "definitions", "patternProperties"})


def count_text_tokens(text: str, model: str) -> int:
    """Tokens in `text` for `model`'s encoding; special-token text counts as plain text."""
    return len(get_encoding(model_info(model).encoding).encode_ordinary(text))


def count_request_tokens(request: Mapping[str, Any], formats: FormatTokens | None = None) -> int:
    """`count_message_tokens` of a request body: its messages, model, tools and response format.

    `formats`: a `FormatTokens` that remembers the response format by its object, for
    requests built by the plugin (whose formats are never changed once made).

    Example:
        >>> count_request_tokens({"model": "gpt-4o-mini", "messages": [
        ...     {"role": "user", "content": "Hello"}]})
        8
    """
    model, found = request["model"], request.get("response_format")
    if formats is None:
        return count_message_tokens(
            request["messages"], model, request.get("tools"), response_format=found
        )
    return count_message_tokens(request["messages"], model, request.get("tools")) + formats(
        found, model
    )


class FormatTokens:
    """`response_format_tokens` remembered by the format object: a night's requests share
    one format per schema, built once and never changed, so its schema is serialized once,
    not per request. For the plugin's own requests, and for estimates settled later (the
    limiter's reservations): a caller's format changed in place would keep its first count,
    so exact counts of a caller's requests use `count_request_tokens(request)` alone. At
    most `size` objects are remembered (a re-ask's format is new each time); safe across
    threads.

    Example:
        >>> formats = FormatTokens()
        >>> city = {"type": "json_schema", "json_schema": {"name": "City", "schema": {}}}
        >>> formats(city, "gpt-4o-mini") == response_format_tokens(city, "gpt-4o-mini")
        True
    """

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._known: dict[tuple[int, str], tuple[Any, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, response_format: Any, model: str) -> int:
        key = (id(response_format), model)
        with self._lock:
            known = self._known.get(key)
        if known is not None and known[0] is response_format:
            return known[1]
        tokens = response_format_tokens(response_format, model)
        with self._lock:
            if len(self._known) >= self.size:
                self._known.pop(next(iter(self._known)))
            self._known[key] = (response_format, tokens)  # held, so its id stays its own
        return tokens


# One memo per process for the plugin's own requests (their formats are built once per
# schema): the sender's reservations and the context fitter's quick bound share it.
FORMAT_TOKENS = FormatTokens()


def count_message_tokens(
    messages: Sequence[Mapping[str, Any]],
    model: str,
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    response_format: Any = None,
) -> int:
    """Return the `usage.prompt_tokens` the API reports for `messages` (and `tools`, and a
    `response_format` of type `json_schema`; other response formats cost nothing)."""
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
    return total + response_format_tokens(response_format, model)


def response_format_tokens(response_format: Any, model: str) -> int:
    """The prompt tokens a `response_format` adds: its schema's for `json_schema`, else 0.

    Example:
        >>> response_format_tokens({"type": "json_schema", "json_schema": {"name": "City",
        ...     "schema": {"type": "object", "properties": {"name": {"type": "string"}},
        ...                "required": ["name"], "additionalProperties": False}}}, "gpt-4o-mini")
        23
        >>> response_format_tokens({"type": "json_object"}, "gpt-4o-mini")
        0
    """
    if not isinstance(response_format, Mapping) or response_format.get("type") != "json_schema":
        return 0
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    if not isinstance(schema, Mapping):
        return 0
    # cached by the schema's JSON, so a schema changed in place is counted anew
    as_json = json.dumps(schema, ensure_ascii=False, separators=(",", ":"), default=str)
    return _schema_tokens(as_json, model_info(model).encoding)


@functools.lru_cache(maxsize=256)  # a night sends one or a few schemas, many times
def _schema_tokens(schema_json: str, encoding: str) -> int:
    """The tokens of a schema (given as JSON) as the API bills it: compact JSON, its
    unbilled keywords left out, plus 9."""
    billed = json.dumps(
        _without_unbilled(json.loads(schema_json)), ensure_ascii=False, separators=(",", ":")
    )
    return _FORMAT_INIT + len(get_encoding(encoding).encode_ordinary(billed))


def _without_unbilled(node: Any, named: bool = False) -> Any:
    """`node` without the unbilled keywords (a property that is called `required` stays)."""
    if isinstance(node, dict):
        return {
            key: _without_unbilled(value, not named and key in _NAMED_CHILDREN)
            for key, value in node.items()
            if named or key not in _UNBILLED_KEYWORDS
        }
    if isinstance(node, list):
        return [_without_unbilled(item) for item in node]
    return node


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
