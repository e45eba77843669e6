"""What one record's attempts so far cost and said (`Tally`), and the typed result it ends in.

The extraction loop (`extraction.engine`) adds each call's result to its tally and asks
it for the `Extraction[schema]` once the record is decided; every attempt is paid for, so
usage, cost, errors, raw outputs, finish reasons and request ids are kept for all of them.

Example:
    >>> from pydantic import BaseModel
    >>> from prefect_openai_chat.results import ChatResult
    >>> class City(BaseModel):
    ...     name: str
    >>> tally = Tally()
    >>> tally.add(ChatResult(content='{"name": 7}', finish_reason="stop"), "gpt-4o-mini")
    >>> tally.error("name: Input should be a valid string")
    >>> done = tally.finish(City, "invalid", "invalid: name")
    >>> done.calls, done.errors
    (1, ['attempt 1: name: Input should be a valid string'])
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from pydantic import BaseModel

from prefect_openai_chat.results import ChatResult, Extraction, Outcome, Usage
from prefect_openai_chat.tokens import estimate_cost

M = TypeVar("M", bound=BaseModel)


@dataclass
class Tally:
    """What the attempts so far cost and said."""

    calls: int = 0
    usage: Usage = field(default_factory=Usage)
    costs: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    raw_outputs: list[str] = field(default_factory=list)
    finish_reasons: list[str | None] = field(default_factory=list)
    request_ids: list[str | None] = field(default_factory=list)
    latency_s: float = 0.0
    repaired: bool = False
    reprompts: int = 0
    retries: int = 0
    http_429s: int = 0

    def add(self, result: ChatResult, model: str) -> None:
        self.calls += 1
        self.retries += max(0, result.http_attempts - 1)
        self.http_429s += result.http_429s
        self.usage = self.usage + result.usage
        cost = result.cost_usd
        if cost is None:
            u = result.usage
            cost = estimate_cost(model, u.prompt_tokens, u.completion_tokens, u.cached_tokens)
        if cost is not None:
            self.costs.append(cost)
        raw = result.tool_calls[0].arguments if result.tool_calls else result.content
        self.raw_outputs.append(raw or result.refusal or "")
        self.finish_reasons.append(result.finish_reason)
        self.request_ids.append(result.request_id)
        self.latency_s += result.latency_s

    def error(self, text: str) -> None:
        self.errors.append(f"attempt {self.calls}: {text}")

    def finish(
        self, schema: type[M], outcome: Outcome, reason: str | None, value: M | None = None
    ) -> Extraction[M]:
        cls = cast("type[Extraction[M]]", _extraction_type(schema))
        return cls(
            value=value,
            ok=outcome == "ok",
            outcome=outcome,
            reason=reason,
            calls=self.calls,
            retries=self.retries,
            http_429s=self.http_429s,
            repaired=self.repaired,
            reprompts=self.reprompts,
            usage=self.usage,
            cost_usd=round(sum(self.costs), 10) if self.costs else None,
            errors=self.errors,
            raw_outputs=self.raw_outputs,
            finish_reasons=self.finish_reasons,
            request_ids=self.request_ids,
            latency_s=round(self.latency_s, 6),
        )


@functools.lru_cache(maxsize=256)
def _extraction_type(schema: type[BaseModel]) -> type[Extraction[Any]]:
    """`Extraction[schema]`, held strongly.

    pydantic keeps parametrized generics only weakly: without this, the class is
    often collected between two records and rebuilt (about 1 ms) for the next one.
    Bounded, not weakly keyed: the value refers to `schema`, so a weak key would never
    be freed; at most 256 schemas (the least recently used dropped) are held.
    """
    return Extraction[schema]  # type: ignore[valid-type]
