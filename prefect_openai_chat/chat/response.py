"""Turn what the API returned (a completion, or a stream of chunks) into a `ChatResult`.

Whatever the body, this gives a `ChatResult` or a typed error (`MalformedResponseError`,
`IncompleteStreamError`), never a bare KeyError or ValidationError from deep inside:
fields a server leaves out read as missing, a usage figure that is not a count reads as
0, tool calls without an id or an index are tolerated (arguments sent as a JSON object
are kept as its text), and a choice, message, chunk or content of the wrong type is a
malformed response.

Example:
    >>> from prefect_openai_chat.chat.response import StreamAccumulator
    >>> StreamAccumulator().content
    ''
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import openai
from pydantic import ValidationError

from prefect_openai_chat.errors import (
    ContentFilteredError,
    IncompleteStreamError,
    MalformedResponseError,
)
from prefect_openai_chat.results import ChatResult, ToolCall, Usage

_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAGS = re.compile(r"<[^>]+>")
_WORDS_LIMIT = 300
_WORDS_DEPTH = 20
_WORDS_ITEMS = 20  # items of a list body read


def usage_from(raw: Any) -> Usage:
    """Read an `openai` usage object (or dict), tolerating servers that omit the details."""
    if raw is None:
        return Usage()
    prompt_details = _field(raw, "prompt_tokens_details")
    completion_details = _field(raw, "completion_tokens_details")
    return Usage(
        prompt_tokens=_count(_field(raw, "prompt_tokens")),
        completion_tokens=_count(_field(raw, "completion_tokens")),
        cached_tokens=_count(_field(prompt_details, "cached_tokens")),
        reasoning_tokens=_count(_field(completion_details, "reasoning_tokens")),
    )


def _count(value: Any) -> int:
    """A token count as a server sent it (`12`, `12.0`, `"12"`); anything else is 0.

    Example:
        >>> _count(12), _count("12"), _count(-3), _count("many"), _count(None)
        (12, 12, 0, 0, 0)
    """
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float) and value.is_integer():
        return max(int(value), 0)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return 0


def result_from_response(response: Any, request_id: str | None, where: str) -> ChatResult:
    """Read a raw 200 answer (its `content` bytes, its `headers`) into a `ChatResult`; anything
    but a completion is malformed.

    The body is read as JSON and its fields looked up directly, not built into the SDK's
    objects first (with the request's type walk, about a third of the SDK's client CPU per
    call). `where` names the endpoint (base URL and model) for the error message.

    Raises:
        MalformedResponseError: the body is not JSON, not a completion, or has no choices.
    """
    kind = response.headers.get("content-type") or "an unknown content type"
    try:
        body = json.loads(response.content)
    except ValueError as exc:  # a body cut or garbled by a proxy, or text/plain, HTML
        if "json" in kind:
            said = f"{where} answered 200 with a body that is not valid JSON ({exc})"
            raise MalformedResponseError(f"{said} {_after(request_id)}") from exc
        body = response.content.decode("utf-8", errors="replace")
    return result_from_body(body, request_id, where, kind)


def result_from_body(
    body: Any, request_id: str | None, where: str, kind: str = "application/json"
) -> ChatResult:
    """`result_from_response` for a body already read: JSON (dicts) or the SDK's objects.

    Example:
        >>> message = {"role": "assistant", "content": "Hi"}
        >>> body = {"choices": [{"message": message, "finish_reason": "stop"}]}
        >>> result_from_body(body, "req_1", "the server").content
        'Hi'
    """
    said = f"{where} answered 200 with"
    after = _after(request_id)
    if not _is_object(body):  # text/plain, HTML, a JSON list or number
        text = _words_of_text(str(body)) or "an empty body"
        raise MalformedResponseError(
            f"{said} {kind} instead of a chat completion: {text!r} {after}"
        )
    choices = _field(body, "choices")
    if not choices:
        empty = _field(body, "id") is None
        what = "an empty JSON object" if empty else "a completion without choices"
        raise MalformedResponseError(f"{said} {what} {after}")
    if not isinstance(choices, list) or not _is_object(choices[0]):
        raise MalformedResponseError(f"{said} a choice that is not an object {after}")
    message = _field(choices[0], "message")
    if message is None:
        raise MalformedResponseError(f"{said} a choice without a message {after}")
    if not _is_object(message):
        raise MalformedResponseError(f"{said} a message that is not an object {after}")
    try:
        return result_from_completion(body, request_id)
    except (ValidationError, ValueError) as exc:
        raise MalformedResponseError(f"{said} a completion with {_wrong(exc)} {after}") from exc


def _after(request_id: str | None) -> str:
    return f"(request {request_id or 'n/a'}); retried as an outage"


def _field(value: Any, name: str) -> Any:
    """A field of a JSON object, read as JSON (a dict) or as the SDK built it; None if absent."""
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def _label(value: Any) -> str | None:
    """An id, a model name or a fingerprint: a string, else ignored."""
    return value if isinstance(value, str) else None


def _is_object(value: Any) -> bool:
    """Whether `value` is a JSON object, as a dict or as the SDK built it (not a string,
    number, list or null)."""
    return isinstance(value, dict) or (
        value is not None and not isinstance(value, str | int | float | list)
    )


def _wrong(exc: Exception) -> str:
    """What was wrong in a completion or chunk, in a few words."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "a field"
        return f"a wrong value in {where} ({first['msg']})"
    return str(exc)[:200]


def _text(value: Any, what: str) -> str | None:
    """`value` if it is a string or None; content as a list of text parts is joined."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts: [{"type": "text", "text": "..."}]
        texts = [_field(part, "text") for part in value]
        if all(isinstance(t, str) for t in texts):
            return "".join(texts)
    raise ValueError(f"{what} that is not text: {value!r:.80}")


def _arguments(value: Any) -> str:
    """Tool-call arguments as text: a JSON object some servers send is kept as its JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    raise ValueError(f"tool-call arguments that are not text: {value!r:.80}")


def _tool_call(call: Any) -> ToolCall | None:
    """A complete tool call of a message, or None for one without a function."""
    function = _field(call, "function")
    if not _is_object(call) or function is None:
        return None
    return ToolCall(
        id=_text(_field(call, "id"), "a tool-call id") or "",
        name=_text(_field(function, "name"), "a tool name") or "",
        arguments=_arguments(_field(function, "arguments")),
    )


def result_from_completion(completion: Any, request_id: str | None) -> ChatResult:
    """Build a `ChatResult` from a completion (first choice), read as JSON or as the SDK's
    `ChatCompletion`.

    An answer with no content, no tool calls and no refusal is an empty answer: its
    `content` is `""` (never None), whatever its finish reason. An answer of tool calls
    alone has `content` None, whether the server sent `""` or null (a stream cannot tell).
    """
    choices = _field(completion, "choices")
    choice = choices[0] if choices else None
    message = _field(choice, "message")
    calls = _field(message, "tool_calls") or []
    if not isinstance(calls, list):
        raise ValueError(f"tool_calls that are not a list: {calls!r:.80}")
    tool_calls = [call for call in map(_tool_call, calls) if call is not None]
    content = _text(_field(message, "content"), "content")
    refusal = _text(_field(message, "refusal"), "a refusal")
    if content is None and not tool_calls and refusal is None:
        content = ""  # an empty answer, e.g. `content: null` with finish_reason stop
    elif content == "" and tool_calls:
        content = None  # only tool calls, as a stream of the same answer reads
    return ChatResult(
        content=content,
        tool_calls=tool_calls,
        refusal=refusal,
        finish_reason=_field(choice, "finish_reason"),
        model=_label(_field(completion, "model")) or "",
        system_fingerprint=_label(_field(completion, "system_fingerprint")),
        response_id=_label(_field(completion, "id")),
        request_id=request_id,
        usage=usage_from(_field(completion, "usage")),
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
        """Take one chunk; return the new text it carried, if any.

        Raises:
            ValueError: the chunk, a choice or a delta is not an object, or a field that
                carries the answer has the wrong type (the runner: `MalformedResponseError`).
        """
        if not _is_object(chunk):
            raise ValueError(f"a chunk that is not an object: {chunk!r:.80}")
        self.chunks += 1
        self.model = _label(_field(chunk, "model")) or self.model
        self.response_id = _label(_field(chunk, "id")) or self.response_id
        self.system_fingerprint = (
            _label(_field(chunk, "system_fingerprint")) or self.system_fingerprint
        )
        usage = _field(chunk, "usage")
        if usage is not None:
            self.usage = usage_from(usage)
        choices = _field(chunk, "choices")
        if not choices:  # the usage-only last chunk
            return None
        if not isinstance(choices, list) or not _is_object(choices[0]):
            raise ValueError(f"a choice that is not an object: {choices!r:.80}")
        choice = choices[0]
        finish = _field(choice, "finish_reason")
        if finish is not None:
            self.finish_reason = _text(finish, "a finish_reason")
        delta = _field(choice, "delta")
        if delta is None:
            return None
        if not _is_object(delta):
            raise ValueError(f"a delta that is not an object: {delta!r:.80}")
        refusal = _text(_field(delta, "refusal"), "a refusal")
        if refusal:
            self.refusal_parts.append(refusal)
        calls = _field(delta, "tool_calls") or []
        if not isinstance(calls, list):
            raise ValueError(f"tool_calls that are not a list: {calls!r:.80}")
        for call in calls:
            self._add_call(call)
        text = _text(_field(delta, "content"), "content")
        if text:
            self.parts.append(text)
            return text
        return None

    def _add_call(self, call: Any) -> None:
        """One tool-call fragment; a server that sends no `index` continues the last call
        unless the fragment names a new id."""
        if not _is_object(call):
            raise ValueError(f"a tool call that is not an object: {call!r:.80}")
        call_id = _text(_field(call, "id"), "a tool-call id")
        index = _field(call, "index")
        if not isinstance(index, int) or isinstance(index, bool):
            known = {parts.id: i for i, parts in self.tool_calls.items()}
            last = max(self.tool_calls, default=0)
            if call_id and call_id in known:
                index = known[call_id]
            elif call_id and self.tool_calls and self.tool_calls[last].id:
                index = last + 1
            else:
                index = last
        parts = self.tool_calls.setdefault(index, _ToolCallParts())
        parts.id = call_id or parts.id
        function = _field(call, "function")
        if function is not None:
            parts.name = _text(_field(function, "name"), "a tool name") or parts.name
            arguments = _arguments(_field(function, "arguments"))
            if arguments:
                parts.arguments.append(arguments)

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
        try:
            return self._result(request_id)
        except ValidationError as exc:  # the fields are checked as they come; a safety net
            raise MalformedResponseError(
                f"the stream from {where} held {_wrong(exc)} (request {request_id or 'n/a'});"
                " retried as an outage"
            ) from exc

    def _result(self, request_id: str | None) -> ChatResult:
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


def server_words_of(body: Any, _depth: int = 0) -> str | None:
    """`server_words` for a parsed body (dict, list or text); looks 20 levels deep at most
    (a body nested a thousand levels deep would otherwise raise RecursionError)."""
    if isinstance(body, str):
        return _words_of_text(body) or None
    if _depth >= _WORDS_DEPTH:
        return None
    if isinstance(body, list):
        parts = [server_words_of(item, _depth + 1) for item in body[:_WORDS_ITEMS]]
        return "; ".join(p for p in parts if p) or None
    if isinstance(body, dict):
        for key in ("message", "error", "detail", "msg", "error_message", "title"):
            words = server_words_of(body.get(key), _depth + 1)
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
