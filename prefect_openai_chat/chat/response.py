"""Turn what the API returned (a completion, or a stream of chunks) into a `ChatResult`.

Example:
    >>> from prefect_openai_chat.chat.response import StreamAccumulator
    >>> StreamAccumulator().content
    ''
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect_openai_chat.errors import IncompleteStreamError
from prefect_openai_chat.results import ChatResult, ToolCall, Usage


def usage_from(raw: Any) -> Usage:
    """Read an `openai` usage object (or dict), tolerating servers that omit the details."""
    if raw is None:
        return Usage()
    get = raw.get if isinstance(raw, dict) else lambda k, d=None: getattr(raw, k, d)
    prompt_details = get("prompt_tokens_details")
    completion_details = get("completion_tokens_details")
    return Usage(
        prompt_tokens=get("prompt_tokens", 0) or 0,
        completion_tokens=get("completion_tokens", 0) or 0,
        cached_tokens=_detail(prompt_details, "cached_tokens"),
        reasoning_tokens=_detail(completion_details, "reasoning_tokens"),
    )


def _detail(details: Any, name: str) -> int:
    if details is None:
        return 0
    value = details.get(name) if isinstance(details, dict) else getattr(details, name, None)
    return int(value or 0)


def result_from_completion(completion: Any, request_id: str | None) -> ChatResult:
    """Build a `ChatResult` from a parsed `ChatCompletion` (first choice)."""
    choice = completion.choices[0] if completion.choices else None
    message = choice.message if choice is not None else None
    tool_calls = [
        ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments or "")
        for call in (getattr(message, "tool_calls", None) or [])
        if getattr(call, "function", None) is not None
    ]
    return ChatResult(
        content=getattr(message, "content", None),
        tool_calls=tool_calls,
        refusal=getattr(message, "refusal", None),
        finish_reason=getattr(choice, "finish_reason", None),
        model=completion.model or "",
        system_fingerprint=getattr(completion, "system_fingerprint", None),
        response_id=completion.id,
        request_id=request_id,
        usage=usage_from(completion.usage),
    )


@dataclass
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class StreamAccumulator:
    """Collects stream chunks: `None` deltas, tool-call fragments and the usage-only chunk."""

    parts: list[str] = field(default_factory=list)
    refusal_parts: list[str] = field(default_factory=list)
    tool_calls: dict[int, _ToolCallParts] = field(default_factory=dict)
    finish_reason: str | None = None
    model: str = ""
    response_id: str | None = None
    system_fingerprint: str | None = None
    usage: Usage | None = None
    chunks: int = 0

    @property
    def content(self) -> str:
        """The text received so far."""
        return "".join(self.parts)

    def add(self, chunk: Any) -> str | None:
        """Take one chunk; return the new text it carried, if any."""
        self.chunks += 1
        self.model = chunk.model or self.model
        self.response_id = chunk.id or self.response_id
        self.system_fingerprint = (
            getattr(chunk, "system_fingerprint", None) or self.system_fingerprint
        )
        if getattr(chunk, "usage", None) is not None:
            self.usage = usage_from(chunk.usage)
        if not chunk.choices:  # the usage-only last chunk
            return None
        choice = chunk.choices[0]
        if choice.finish_reason is not None:
            self.finish_reason = choice.finish_reason
        delta = choice.delta
        if delta is None:
            return None
        if getattr(delta, "refusal", None):
            self.refusal_parts.append(delta.refusal)
        for call in getattr(delta, "tool_calls", None) or []:
            parts = self.tool_calls.setdefault(call.index, _ToolCallParts())
            parts.id = call.id or parts.id
            if call.function is not None:
                parts.name = call.function.name or parts.name
                if call.function.arguments:
                    parts.arguments.append(call.function.arguments)
        text = delta.content
        if text:
            self.parts.append(text)
            return str(text)
        return None

    def result(self, request_id: str | None) -> ChatResult:
        """The complete answer; raises `IncompleteStreamError` if the stream was cut."""
        if self.finish_reason is None:
            raise IncompleteStreamError(
                f"stream ended after {self.chunks} chunks without a finish_reason"
                f" (request {request_id}); the partial text is not an answer"
            )
        return ChatResult(
            content=self.content if (self.parts or not self.tool_calls) else None,
            tool_calls=[
                ToolCall(id=p.id, name=p.name, arguments="".join(p.arguments))
                for _, p in sorted(self.tool_calls.items())
            ],
            refusal="".join(self.refusal_parts) or None,
            finish_reason=self.finish_reason,
            model=self.model,
            system_fingerprint=self.system_fingerprint,
            response_id=self.response_id,
            request_id=request_id,
            usage=self.usage or Usage(),
        )
