"""Building the request of a call: what `complete` was asked for, the JSON body it sends, and
that body handed to the SDK.

Example:
    >>> from prefect_openai_chat.chat.settings import ChatSettings
    >>> settings = ChatSettings(model="gpt-4o-mini", defaults={"seed": 1, "top_p": None})
    >>> build_request(settings, [{"role": "user", "content": "Hi"}], {"temperature": 0})
    {'seed': 1, 'temperature': 0, 'model': 'gpt-4o-mini', 'messages': [{'role': 'user', \
'content': 'Hi'}]}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect_openai_chat.chat.messages import validate_messages, validate_model_name
from prefect_openai_chat.chat.settings import ChatSettings

DeltaCallback = Callable[[str], None]


@dataclass(frozen=True)
class Call:
    """What one `complete` was asked for: the messages, streaming, and the overrides."""

    messages: Sequence[Any]
    stream: bool = False
    on_delta: DeltaCallback | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def for_fallback(self) -> Call:
        """The same call for a fallback, which sends it to its own model."""
        overrides = {k: v for k, v in self.overrides.items() if k != "model"}
        return Call(self.messages, self.stream, self.on_delta, overrides)


def build_request(
    settings: ChatSettings, messages: Sequence[Any], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """The checked request: the settings' defaults, the overrides, the model, the messages.

    Raises:
        InvalidInputError: The messages or the model name are malformed (nothing is sent).
    """
    checked = validate_messages(messages)
    request = {**settings.request_defaults(), **overrides}
    request["model"] = validate_model_name(request.get("model", settings.model))
    request["messages"] = checked
    return request


def summary_request(settings: ChatSettings, messages: Sequence[Any], room: int) -> dict[str, Any]:
    """The checked request of a summary call: the settings' model, no defaults of the call
    (no response format, no tools), `room` completion tokens."""
    return {
        "model": validate_model_name(settings.model),
        "messages": validate_messages(messages),
        "max_completion_tokens": room,
    }


def request_body(
    settings: ChatSettings, messages: Sequence[Any], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON body a call sends for `messages` (before any context fitting)."""
    sent = as_sent(build_request(settings, messages, overrides))
    return {**sent["extra_body"], "model": sent["model"]}


def as_sent(request: Mapping[str, Any]) -> dict[str, Any]:
    """The request for `create(...)`, its body handed to the SDK as plain JSON in `extra_body`.

    The SDK walks every parameter against its type hints before sending: about 3 ms of
    CPU per call for an extraction request (messages, a JSON schema), more than all the
    rest of the call. The plugin has checked the messages already (`validate_messages`),
    and the body is plain JSON: `extra_body`, which the SDK merges over the typed
    parameters unchanged, sends it byte for byte as it is. Only `model` stays typed.

    Example:
        >>> as_sent({"model": "m", "messages": [], "seed": 1, "timeout": 5})
        {'timeout': 5, 'model': 'm', 'messages': [], 'extra_body': {'messages': [], 'seed': 1}}
    """
    body = {name: value for name, value in request.items() if name not in _SDK_OPTIONS}
    body.pop("model", None)
    body.update(request.get("extra_body") or {})
    options = {name: request[name] for name in _SDK_OPTIONS if name in request}
    return {**options, "model": request["model"], "messages": [], "extra_body": body}


# Options of the SDK's `create`, not fields of the JSON body.
_SDK_OPTIONS = ("extra_headers", "extra_query", "extra_body", "timeout")
