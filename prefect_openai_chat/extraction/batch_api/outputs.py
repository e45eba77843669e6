"""Read a batch's output and error files back, by `custom_id`, into `ChatResult`s.

Lines come in any order; each is matched by its `custom_id`. A 200 line becomes the
same `ChatResult` an online call would return, priced at the Batch API's rate; any
other line becomes the error it reports.

Example:
    >>> line = (b'{"id": "r", "custom_id": "k", "response": null,'
    ...         b' "error": {"code": "batch_expired", "message": "too late"}}')
    >>> read_result_lines(line, "gpt-4o-mini")["k"].error
    'batch_expired: too late'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from openai.types.chat import ChatCompletion

from prefect_openai_chat.chat.response import result_from_completion
from prefect_openai_chat.results import ChatResult
from prefect_openai_chat.tokens import estimate_cost
from prefect_openai_chat.tokens.prices import Price

UNFINISHED_CODES = frozenset({"batch_expired", "batch_cancelled"})


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


def read_result_lines(
    data: bytes, model: str, prices: Mapping[str, Price] | None = None
) -> dict[str, LineResult]:
    """The lines of an output or error file, by `custom_id`."""
    results: dict[str, LineResult] = {}
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            custom_id = str(line["custom_id"])
        except (ValueError, KeyError, TypeError):
            continue  # not a result line: nothing to match it to
        results[custom_id] = _line_result(line, model, prices)
    return results


def _line_result(
    line: dict[str, Any], model: str, prices: Mapping[str, Price] | None
) -> LineResult:
    error = line.get("error")
    response = line.get("response") or {}
    status = response.get("status_code")
    body = response.get("body")
    if error:
        code = str(error.get("code") or "error")
        return LineResult(error=f"{code}: {error.get('message') or 'no message'}", code=code)
    if status != 200 or not isinstance(body, dict):
        detail = body.get("error") if isinstance(body, dict) else None
        message = str(detail.get("message")) if isinstance(detail, dict) else str(body)[:200]
        found = detail.get("code") if isinstance(detail, dict) else None
        return LineResult(error=f"HTTP {status}: {message}", code=str(found or status))
    try:
        completion = ChatCompletion.model_validate(body)
    except ValueError as exc:
        return LineResult(error=f"the batch answered with a malformed completion ({exc:.200})")
    if not completion.choices:
        return LineResult(error="the batch answered with a completion without choices")
    result = result_from_completion(completion, response.get("request_id"))
    usage = result.usage
    name = result.model or model
    tokens = (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
    cost = estimate_cost(name, *tokens, prices=prices, batch=True)
    online = estimate_cost(name, *tokens, prices=prices)
    return LineResult(answer=result.model_copy(update={"cost_usd": cost}), online_cost_usd=online)
