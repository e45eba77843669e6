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
    body, _ = as_posted(build_request(settings, messages, overrides))
    return body


def as_posted(request: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON body of `request` and the SDK's options for `AsyncOpenAI.post`.

    The body goes to the SDK's `post` as it is, plain JSON: `create(...)` would walk every
    parameter against its type hints first (with the answer's parse, about a third of the
    SDK's client CPU per extraction call), and the plugin has checked the messages already
    (`validate_messages`). The options are those `create` passes: the bearer key, and the
    request's own `extra_headers`, `extra_query` and `timeout`; its `extra_body` is merged
    into the body.

    Example:
        >>> as_posted({"model": "m", "messages": [], "seed": 1, "timeout": 5})
        ({'model': 'm', 'messages': [], 'seed': 1}, {'security': {'bearer_auth': True}, \
'timeout': 5})
    """
    body = {name: value for name, value in request.items() if name not in _SDK_OPTIONS}
    body.update(request.get("extra_body") or {})
    options: dict[str, Any] = {"security": {"bearer_auth": True}}
    for name, option in _SDK_OPTIONS.items():
        if name in request and option:
            options[option] = request[name]
    return body, options


# Options of the SDK's `create`, not fields of the JSON body, and their names in `post`'s
# options (`extra_body` is merged into the body instead).
_SDK_OPTIONS = {
    "extra_headers": "headers",
    "extra_query": "params",
    "extra_body": "",
    "timeout": "timeout",
}
