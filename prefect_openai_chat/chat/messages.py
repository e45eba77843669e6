"""Check chat messages before anything is sent, with errors that say what to fix.

Example:
    >>> from prefect_openai_chat.chat.messages import validate_messages
    >>> validate_messages([{"role": "user", "content": "Hi"}])
    [{'role': 'user', 'content': 'Hi'}]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.surrogates import lone_surrogate
from prefect_openai_chat.tokens.roles import ROLES

_PART_TYPES = frozenset({"text", "image_url", "input_audio", "file", "refusal"})


def validate_messages(messages: Any) -> list[dict[str, Any]]:
    """Return a shallow copy of `messages` after checking their shape.

    Raises:
        InvalidInputError: naming the message index and the field that is wrong.
    """
    if isinstance(messages, str):
        raise InvalidInputError(
            "messages must be a list of {'role': ..., 'content': ...} dicts, not a string;"
            " wrap it: [{'role': 'user', 'content': text}]"
        )
    if not isinstance(messages, Sequence) or not messages:
        raise InvalidInputError(
            "messages is empty; pass at least one message such as"
            " [{'role': 'user', 'content': 'Hello'}]"
        )
    checked = []
    for index, message in enumerate(messages):
        checked.append(_validate_one(index, message))
    return checked


def _validate_one(index: int, message: Any) -> dict[str, Any]:
    where = f"messages[{index}]"
    if hasattr(message, "model_dump"):
        message = message.model_dump(exclude_none=True)
    if not isinstance(message, Mapping):
        raise InvalidInputError(
            f"{where} must be a dict with 'role' and 'content', got {message!r:.80}"
        )
    role = message.get("role")
    if role is None:
        raise InvalidInputError(f"{where} has no 'role'; use one of {sorted(ROLES)}")
    if role not in ROLES:
        raise InvalidInputError(f"{where} has unknown role {role!r}; use one of {sorted(ROLES)}")
    content = message.get("content")
    if role == "assistant":
        if content is None and not message.get("tool_calls") and not message.get("function_call"):
            raise InvalidInputError(
                f"{where} is an assistant message with neither content nor tool_calls"
            )
    elif role == "tool" and not message.get("tool_call_id"):
        raise InvalidInputError(f"{where} is a tool message without 'tool_call_id'")
    if content is None and role != "assistant":
        raise InvalidInputError(f"{where} ({role}) has no 'content'")
    if content is not None:
        _validate_content(where, role, content)
    if "name" in message and not isinstance(message["name"], str):
        raise InvalidInputError(f"{where}.name must be a string")
    return dict(message)


def _validate_content(where: str, role: str, content: Any) -> None:
    if isinstance(content, str):
        _no_lone_surrogate(f"{where}.content", content)
        return
    if isinstance(content, list) and role in ("user", "system", "developer", "assistant", "tool"):
        for part_index, part in enumerate(content):
            part_where = f"{where}.content[{part_index}]"
            if not isinstance(part, Mapping) or part.get("type") not in _PART_TYPES:
                raise InvalidInputError(
                    f"{part_where} must be a content part such as {{'type': 'text', 'text': '...'}}"
                )
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                raise InvalidInputError(f"{part_where} is a text part whose 'text' is not a string")
            if part["type"] == "text":
                _no_lone_surrogate(f"{part_where}.text", part["text"])
            if role != "user" and part["type"] not in ("text", "refusal"):
                raise InvalidInputError(f"{part_where}: {role} messages take text parts only")
        return
    raise InvalidInputError(
        f"{where}.content must be a string (or a list of content parts), got"
        f" {type(content).__name__}; convert it with str() or json.dumps() first"
    )


def _no_lone_surrogate(where: str, text: str) -> None:
    """Refuse a text no request can carry: UTF-8 has no lone surrogate (`surrogates`)."""
    half = lone_surrogate(text)
    if half is not None:
        raise InvalidInputError(
            f"{where} holds a lone surrogate ({half}), half of a UTF-16 pair that no request"
            " can carry as UTF-8 (often half an emoji, from text cut between its two halves);"
            " remove it, or replace it with text.encode('utf-8', 'replace').decode()"
        )


def validate_model_name(model: Any) -> str:
    """Return `model` stripped, or raise when it is empty or not a string."""
    if not isinstance(model, str) or not model.strip():
        raise InvalidInputError(
            f"model must be a non-empty model name such as 'gpt-4o-mini', got {model!r}"
        )
    return model.strip()
