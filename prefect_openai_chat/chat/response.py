"""Turn what the API returned (a completion, or a stream of chunks) into a `ChatResult`.

Example:
    >>> from prefect_openai_chat.chat.response import StreamAccumulator
    >>> StreamAccumulator().content
    ''
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import openai

from prefect_openai_chat.errors import (
    ContentFilteredError,
    IncompleteStreamError,
    MalformedResponseError,
)
from prefect_openai_chat.results import ChatResult, ToolCall, Usage

_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAGS = re.compile(r"<[^>]+>")
_WORDS_LIMIT = 300


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


def result_from_raw(raw: Any, request_id: str | None, where: str) -> ChatResult:
    """Parse a raw 200 answer into a `ChatResult`; anything but a completion is malformed.

    `where` names the endpoint (base URL and model) for the error message.

    Raises:
        MalformedResponseError: the body is not JSON, not a completion, or has no choices.
    """
    said = f"{where} answered 200 with"
    after = f"(request {request_id or 'n/a'}); retried as an outage"
    try:
        completion = raw.parse()
    except ValueError as exc:  # json.JSONDecodeError: a body cut or garbled by a proxy
        raise MalformedResponseError(
            f"{said} a body that is not valid JSON ({exc}) {after}"
        ) from exc
    if not hasattr(completion, "choices"):  # text/plain, HTML: the SDK hands back the text
        kind = raw.headers.get("content-type", "an unknown content type")
        text = _words_of_text(str(completion)) or "an empty body"
        raise MalformedResponseError(
            f"{said} {kind} instead of a chat completion: {text!r} {after}"
        )
    if not completion.choices:
        what = "an empty JSON object" if completion.id is None else "a completion without choices"
        raise MalformedResponseError(f"{said} {what} {after}")
    if completion.choices[0].message is None:
        raise MalformedResponseError(f"{said} a choice without a message {after}")
    return result_from_completion(completion, request_id)


def result_from_completion(completion: Any, request_id: str | None) -> ChatResult:
    """Build a `ChatResult` from a parsed `ChatCompletion` (first choice).

    An answer with no content, no tool calls and no refusal is an empty answer: its
    `content` is `""` (never None), whatever its finish reason.
    """
    choice = completion.choices[0] if completion.choices else None
    message = choice.message if choice is not None else None
    tool_calls = [
        ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments or "")
        for call in (getattr(message, "tool_calls", None) or [])
        if getattr(call, "function", None) is not None
    ]
    content = getattr(message, "content", None)
    refusal = getattr(message, "refusal", None)
    if content is None and not tool_calls and refusal is None:
        content = ""  # an empty answer, e.g. `content: null` with finish_reason stop
    return ChatResult(
        content=content,
        tool_calls=tool_calls,
        refusal=refusal,
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

    def result(self, request_id: str | None, where: str = "the server") -> ChatResult:
        """The complete answer; raises `IncompleteStreamError` if the stream was cut.

        A stream may end with `data: [DONE]` or just end: only the finish reason counts.
        """
        if self.finish_reason is None:
            raise IncompleteStreamError(
                f"the stream from {where} ended after {self.chunks} chunks without a"
                f" finish_reason (request {request_id or 'n/a'}); the partial text is not an"
                " answer"
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


# --- what the server said, whatever the shape of its error body -------------------------


def server_words(exc: openai.APIStatusError) -> str | None:
    """The server's own message from an error body of any shape.

    OpenAI's `{"error": {"message"}}`, a top-level `{"message"}`, Ollama's
    `{"error": "..."}`, FastAPI's `{"detail": "..."}` (or a list of `{"msg"}`), a plain
    text body, or an HTML page's title.

    Example:
        >>> server_words_of({"detail": [{"msg": "field required"}]})
        'field required'
    """
    return server_words_of(exc.body)


def server_words_of(body: Any) -> str | None:
    """`server_words` for a parsed body (dict, list or text)."""
    if isinstance(body, str):
        return _words_of_text(body) or None
    if isinstance(body, list):
        parts = [server_words_of(item) for item in body]
        return "; ".join(p for p in parts if p) or None
    if isinstance(body, dict):
        for key in ("message", "error", "detail", "msg", "error_message", "title"):
            words = server_words_of(body.get(key))
            if words:
                return words[:_WORDS_LIMIT]
    return None


def _words_of_text(text: str) -> str:
    title = _TITLE.search(text)
    if title:
        return " ".join(title.group(1).split())[:_WORDS_LIMIT]
    if "<" in text and ">" in text:
        text = _TAGS.sub(" ", text)
    return " ".join(text.split())[:_WORDS_LIMIT]


def with_server_words(exc: openai.APIStatusError) -> None:
    """Put the server's own words into `exc`'s message (in place) when they are missing."""
    words = server_words(exc)
    if not words or words in exc.message:
        return
    exc.message = f"{exc.message} - {words}"
    exc.args = (exc.message, *exc.args[1:])


def content_filter_error(exc: openai.APIStatusError, where: str) -> ContentFilteredError | None:
    """Azure's 400 `content_filter` for a filtered prompt as a `ContentFilteredError`, or None."""
    if exc.status_code != 400 or exc.code != "content_filter":
        return None
    body = exc.body if isinstance(exc.body, dict) else {}
    inner = body.get("innererror") or {}
    result = inner.get("content_filter_result") if isinstance(inner, dict) else None
    categories = dict(result) if isinstance(result, dict) else {}
    hits = [
        f"{name} ({verdict.get('severity', 'filtered')})"
        for name, verdict in categories.items()
        if isinstance(verdict, dict) and (verdict.get("filtered") or verdict.get("detected"))
    ]
    named = ", ".join(hits) or "no category named"
    return ContentFilteredError(
        f"{where} refused the prompt: the provider's content filter flagged it ({named});"
        f" request {exc.request_id or 'n/a'}. Rephrase the input or set content_filter='flag'"
        " on the ChatModel to get a flagged result instead; not retried",
        categories=categories,
    )
