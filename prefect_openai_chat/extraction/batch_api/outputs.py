"""Read a batch's output and error files back, by `custom_id`, into `ChatResult`s.

Lines come in any order; each is matched by its `custom_id`. A 200 line becomes the
same `ChatResult` an online call would return, priced at the Batch API's rate; any
other line becomes the error it reports. Nothing in a file is trusted: a line that is
not a result line (a string where an object belongs, no `custom_id`, not JSON) becomes
a malformed-line error or a note, never an exception. A `custom_id` seen twice keeps
one result by `merge_results`: the paid 200 answer beats a failed line, the same
answer twice is kept once, and two different answers are a conflict (no value is
trusted: the record is quarantined, as picking either could be the wrong one).
Every error text is redacted: a server may echo the key in a line's error.

Example:
    >>> line = (b'{"id": "r", "custom_id": "k", "response": null,'
    ...         b' "error": {"code": "batch_expired", "message": "too late"}}')
    >>> read_result_lines(line, "gpt-4o-mini")["k"].error
    'batch_expired: too late'
    >>> read_result_lines(b'{"custom_id": "k", "response": "oops"}', "m")["k"].code
    'malformed_line'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prefect_openai_chat.chat.response import result_from_body
from prefect_openai_chat.errors import MalformedResponseError
from prefect_openai_chat.redaction import redact_text
from prefect_openai_chat.results import ChatResult
from prefect_openai_chat.tokens import estimate_cost
from prefect_openai_chat.tokens.prices import Price

UNFINISHED_CODES = frozenset({"batch_expired", "batch_cancelled"})
MALFORMED = "malformed_line"
CONFLICT = "conflicting_answers"


@dataclass(frozen=True)
class LineResult:
    """What one batch line became: an answer, or an error (and its code)."""

    answer: ChatResult | None = None
    error: str | None = None
    code: str | None = None
    online_cost_usd: float | None = None

    @property
    def unfinished(self) -> bool:
        """True when the batch ended (expired, cancelled) before answering this line."""
        return self.code in UNFINISHED_CODES

    @property
    def conflict(self) -> bool:
        """True when the files answered this record twice, differently: no value is trusted."""
        return self.code == CONFLICT


@dataclass
class ResultLines:
    """The lines of a batch's result files by `custom_id`, and notes on what was not used."""

    by_id: dict[str, LineResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, data: bytes, model: str, prices: Mapping[str, Price] | None, where: str) -> None:
        """Read one file's lines (`where` names the file in notes)."""
        for number, raw in enumerate(data.splitlines(), start=1):
            if not raw.strip():
                continue
            custom_id, result = parse_line(raw, model, prices)
            if custom_id is None:
                self.notes.append(f"{where} line {number}: {result.error}; ignored")
                continue
            seen = self.by_id.get(custom_id)
            if seen is None:
                self.by_id[custom_id] = result
                continue
            self.by_id[custom_id], said = merge_results(seen, result)
            self.notes.append(f"{where} line {number}: record {custom_id[:16]} again: {said}")


def merge_results(first: LineResult, second: LineResult) -> tuple[LineResult, str]:
    """The one result of a `custom_id` seen twice, and what was decided.

    Example:
        >>> a, b = ChatResult(content="x"), ChatResult(content="y")
        >>> merge_results(LineResult(answer=a), LineResult(answer=b))[0].conflict
        True
        >>> merge_results(LineResult(error="HTTP 500"), LineResult(answer=a))[0].answer.content
        'x'
    """
    if first.conflict:
        return first, "already answered differently; still quarantined"
    if first.answer is not None and second.answer is not None:
        if _same(first.answer, second.answer):
            return first, "the same answer again; kept once"
        conflict = LineResult(
            error="the batch answered this record more than once, with different answers;"
            " neither is trusted",
            code=CONFLICT,
        )
        return conflict, "a different answer; the record is quarantined"
    if first.answer is not None:
        return first, f"a failed line ({second.error}) besides the answer; the answer is kept"
    if second.answer is not None:
        return second, f"an answer besides a failed line ({first.error}); the answer is kept"
    return first, f"another failed line ({second.error}); the first is kept"


def _same(one: ChatResult, other: ChatResult) -> bool:
    fields_ = ("content", "tool_calls", "refusal", "finish_reason")
    return all(getattr(one, name) == getattr(other, name) for name in fields_)


def read_result_lines(
    data: bytes, model: str, prices: Mapping[str, Price] | None = None
) -> dict[str, LineResult]:
    """The lines of one output or error file, by `custom_id`."""
    lines = ResultLines()
    lines.add(data, model, prices, "file")
    return lines.by_id


def parse_line(
    raw: bytes, model: str, prices: Mapping[str, Price] | None
) -> tuple[str | None, LineResult]:
    """The `custom_id` of one line (None: not a result line) and what it says."""
    try:
        line = json.loads(raw)
    except ValueError:
        return None, _malformed("not JSON")
    if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str | int):
        return None, _malformed("not a result line (no custom_id)")
    try:
        return str(line["custom_id"]), _line_result(line, model, prices)
    except Exception as exc:  # whatever the line holds, it ends as that record's reason
        return str(line["custom_id"]), _malformed(f"unreadable ({type(exc).__name__}: {exc})")


def _malformed(what: str) -> LineResult:
    return LineResult(error=redact_text(f"malformed result line: {what}")[:300], code=MALFORMED)


def _line_result(
    line: dict[str, Any], model: str, prices: Mapping[str, Price] | None
) -> LineResult:
    error, response = line.get("error"), line.get("response")
    if error is not None and not isinstance(error, dict):
        return _malformed(f"'error' is a {type(error).__name__}, not an object: {error!s:.100}")
    if response is not None and not isinstance(response, dict):
        return _malformed(
            f"'response' is a {type(response).__name__}, not an object: {response!s:.100}"
        )
    response = response or {}
    status = response.get("status_code")
    body = response.get("body")
    if error:
        code = str(error.get("code") or "error")
        text = f"{code}: {error.get('message') or 'no message'}"
        return LineResult(error=redact_text(text)[:500], code=code)
    if status != 200 or not isinstance(body, dict):
        detail = body.get("error") if isinstance(body, dict) else None
        message = str(detail.get("message")) if isinstance(detail, dict) else str(body)[:200]
        found = detail.get("code") if isinstance(detail, dict) else None
        text = redact_text(f"HTTP {status}: {message}")[:500]
        return LineResult(error=text, code=str(found or status))
    try:  # read as the online path reads an answer: JSON fields, not the SDK's objects
        result = result_from_body(body, response.get("request_id"), "the batch")
    except MalformedResponseError as exc:
        return _malformed(str(exc)[:200])
    usage = result.usage
    name = result.model or model
    tokens = (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
    cost = estimate_cost(name, *tokens, prices=prices, batch=True)
    online = estimate_cost(name, *tokens, prices=prices)
    return LineResult(answer=result.model_copy(update={"cost_usd": cost}), online_cost_usd=online)
