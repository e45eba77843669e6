"""The extraction loop: ask, parse, repair, validate, re-ask - with no Prefect in it.

`run_extraction` drives one record through as many calls as it needs, within
bounds: a `finish_reason == "length"` answer is never parsed, only re-sent with more
room; a validation failure is re-asked at most `max_reprompts` times, with a
conversation that never grows beyond one correction pair; a refusal or a content
filter is final; `token_budget` stops before an attempt that could exceed it.
Every attempt is paid for, so usage and cost are summed over all of them.

`call(messages, params)` is the caller's: one logical chat completion (retries and
circuits inside it), returning a `ChatResult`, raising `TruncatedOutputError` /
`ContentFilteredError` (with `.partial`) for "length" / "content_filter".

Example:
    >>> import asyncio
    >>> from pydantic import BaseModel
    >>> from prefect_openai_chat.results import ChatResult
    >>> class City(BaseModel):
    ...     name: str
    >>> async def call(messages, params):
    ...     return ChatResult(content='```json\\n{"name": "Oslo"}\\n```', finish_reason="stop")
    >>> result = asyncio.run(run_extraction(call, City, "I live in Oslo.", model="gpt-4o-mini"))
    >>> result.ok, result.value, result.repaired, result.calls
    (True, City(name='Oslo'), True, 1)
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from pydantic import BaseModel, ValidationError

from prefect_openai_chat.errors import (
    ContentFilteredError,
    InvalidInputError,
    TruncatedOutputError,
)
from prefect_openai_chat.extraction.parsing import parse_result, validate
from prefect_openai_chat.extraction.prompts import TextOrMessages, build_request, resolve_mode
from prefect_openai_chat.extraction.reprompt import (
    correction_for_lazy,
    correction_for_problems,
    correction_for_unparseable,
    problems_from_error,
    reprompt_messages,
)
from prefect_openai_chat.extraction.schema import ensure_model, schema_spec
from prefect_openai_chat.results import ChatResult, Extraction, Outcome, Usage
from prefect_openai_chat.tokens import count_message_tokens, count_text_tokens, estimate_cost
from prefect_openai_chat.tokens import model_info as get_model_info

M = TypeVar("M", bound=BaseModel)
CallFn = Callable[[list[dict[str, Any]], dict[str, Any]], Awaitable[ChatResult]]

MIN_COMPLETION_ROOM = 16  # below this a budget-capped attempt cannot hold an answer
_DEFAULT_FIRST_LIMIT = 1024  # when a truncated answer reports no usage at all


@dataclass
class _Tally:
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

    def add(self, result: ChatResult, model: str) -> None:
        self.calls += 1
        self.retries += max(0, result.http_attempts - 1)
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
    """
    return Extraction[schema]  # type: ignore[valid-type]


async def run_extraction(
    call: CallFn,
    schema: type[M],
    text_or_messages: TextOrMessages,
    *,
    model: str,
    instructions: str | None = None,
    mode: str = "auto",
    max_reprompts: int = 2,
    token_budget: int | None = None,
    max_completion_tokens: int | None = None,
    max_length_retries: int = 2,
    length_growth: float = 2.0,
    max_completion_cap: int | None = None,
    on_error: Literal["raise", "return"] = "raise",
) -> Extraction[M]:
    """Extract one validated `schema` value from a text (or messages) through `call`.

    Args:
        call: Sends one chat completion: `await call(messages, params) -> ChatResult`.
        schema: The pydantic model to extract; its validators take part in re-prompts.
        text_or_messages: The record's text, or chat messages holding it (never changed).
        model: Model name: decides the "auto" mode, token counts, limits and prices.
        instructions: What to extract; a sensible default otherwise.
        mode: "auto", "json_schema", "json_object" or "tools".
        max_reprompts: Re-asks after an invalid, unparseable or lazy answer.
        token_budget: Most tokens (prompt + completion, all attempts) for this record.
        max_completion_tokens: Completion limit of the first attempt (None: the server's).
        max_length_retries: Re-sends with more room after `finish_reason == "length"`.
        length_growth: Factor by which the completion limit grows on each of those.
        max_completion_cap: Upper bound for the grown limit (the model's maximum anyway).
        on_error: "raise" lets errors of `call` other than truncation and content filter
            propagate; "return" turns them into `outcome="error"` with what was spent.

    Returns:
        An `Extraction[schema]`: `ok` and `value`, or `outcome` and `reason`, plus usage,
        cost, errors, raw outputs, finish reasons and request ids of every attempt.
    """
    model_cls = cast("type[M]", ensure_model(schema))
    _check_numbers(
        max_reprompts,
        token_budget,
        max_completion_tokens,
        max_length_retries,
        length_growth,
        max_completion_cap,
    )
    concrete = resolve_mode(mode, model)
    base_messages, base_params = build_request(
        model_cls, text_or_messages, instructions, concrete, model=model
    )
    tool_name = schema_spec(model_cls).name if concrete == "tools" else None
    cap = get_model_info(model).max_output_tokens
    if max_completion_cap is not None:
        cap = min(cap, max_completion_cap)
    tally = _Tally()
    messages = base_messages
    limit = None if max_completion_tokens is None else min(max_completion_tokens, cap)
    length_retries = 0
    lazy_asked = False
    while True:
        params = dict(base_params)
        if limit is not None:
            params["max_completion_tokens"] = limit
        if token_budget is not None:
            stop = _fit_budget(messages, params, model, token_budget, tally.usage.total_tokens, cap)
            if stop is not None:
                return tally.finish(model_cls, "budget", stop)
        try:
            result = await call(messages, params)
        except (TruncatedOutputError, ContentFilteredError) as exc:
            partial = exc.partial if isinstance(exc.partial, ChatResult) else ChatResult()
            reason = "length" if isinstance(exc, TruncatedOutputError) else "content_filter"
            result = partial.model_copy(update={"finish_reason": reason})
        except Exception as exc:
            if on_error == "raise":
                raise
            tally.calls += 1
            tally.error(f"{type(exc).__name__}: {exc}")
            return tally.finish(model_cls, "error", f"the call failed: {type(exc).__name__}: {exc}")
        tally.add(result, model)

        if result.finish_reason == "length":
            used = params.get("max_completion_tokens") or result.usage.completion_tokens
            used = used or count_text_tokens(tally.raw_outputs[-1], model) or _DEFAULT_FIRST_LIMIT
            tally.error(f"truncated at the token limit ({used} completion tokens); not parsed")
            grown = min(math.ceil(used * length_growth), cap)
            if length_retries >= max_length_retries or grown <= used:
                why = (
                    f"the model's limit of {cap} completion tokens was reached"
                    if grown <= used
                    else f"{length_retries} retries with more room did not help"
                )
                return tally.finish(
                    model_cls,
                    "truncated",
                    f"the answer was cut at the token limit on every attempt ({why}, last limit"
                    f" {used}); raise max_completion_tokens or max_completion_cap, or ask for less",
                )
            limit = grown
            length_retries += 1
            continue
        if result.finish_reason == "content_filter" or result.flagged:
            tally.error("stopped by the provider's content filter")
            return tally.finish(
                model_cls, "content_filter", "the provider's content filter stopped the answer"
            )

        parsed = parse_result(result)
        correction: str
        if parsed.kind == "refusal":
            tally.error(parsed.reason or "refused")
            return tally.finish(model_cls, "refused", f"the model {parsed.reason or 'refused'}")
        if parsed.kind == "json":
            value, error, unwrapped = _validated(model_cls, parsed.data)
            if value is not None:
                tally.repaired = parsed.repaired or unwrapped
                return tally.finish(model_cls, "ok", None, value)
            assert error is not None
            problems = problems_from_error(error, model_cls)
            problem_text = "; ".join(str(p) for p in problems)
            tally.error(problem_text)
            correction = correction_for_problems(problems, tool_name=tool_name)
            failure = f"invalid: {problem_text}"
        elif parsed.kind == "lazy":
            tally.error(parsed.reason or "lazy answer")
            failure = f"lazy answer: {parsed.reason}"
            if lazy_asked:
                return tally.finish(model_cls, "invalid", f"{failure}, also after a re-prompt")
            lazy_asked = True
            correction = correction_for_lazy(parsed.lazy_markers, tool_name=tool_name)
        else:
            tally.error(parsed.reason or "no JSON")
            failure = parsed.reason or "no JSON in the answer"
            correction = correction_for_unparseable(failure, tool_name=tool_name)

        if tally.reprompts >= max_reprompts:
            return tally.finish(
                model_cls,
                "invalid",
                f"{failure} (after {tally.reprompts} re-prompt{'s' * (tally.reprompts != 1)})",
            )
        tally.reprompts += 1
        last_answer = parsed.json_text or parsed.text
        if "json_repair" in parsed.fixes:  # show the model the value the problems refer to
            last_answer = json.dumps(parsed.data, ensure_ascii=False)
        messages = reprompt_messages(base_messages, last_answer, correction)


def _validated(schema: type[M], data: Any) -> tuple[M | None, ValidationError | None, bool]:
    """`(value, None, unwrapped)` when `data` validates (maybe once unwrapped), else the error."""
    try:
        return validate(schema, data), None, False
    except ValidationError as exc:
        if isinstance(data, dict) and len(data) == 1:
            # `{"Person": {...}}` or `{"properties": {...}}` around a valid value
            (inner,) = data.values()
            if isinstance(inner, dict):
                try:
                    return validate(schema, inner), None, True
                except ValidationError:
                    pass
        return None, exc, False


def _fit_budget(
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    model: str,
    budget: int,
    spent: int,
    cap: int,
) -> str | None:
    """Set or check the completion room against the budget; a reason to stop, else None."""
    prompt = count_message_tokens(messages, model, tools=params.get("tools"))
    remaining = budget - spent
    room = params.get("max_completion_tokens")
    if room is None:
        room = min(remaining - prompt, cap)
        if room >= MIN_COMPLETION_ROOM:
            params["max_completion_tokens"] = room
            return None
        room = MIN_COMPLETION_ROOM
    elif prompt + room <= remaining:
        return None
    return (
        f"token budget of {budget} reached: {spent} tokens spent, the next attempt needs"
        f" {prompt} prompt + {room} completion tokens"
    )


def _check_numbers(
    max_reprompts: int,
    token_budget: int | None,
    max_completion_tokens: int | None,
    max_length_retries: int,
    length_growth: float,
    max_completion_cap: int | None,
) -> None:
    checks = [
        (max_reprompts >= 0, f"max_reprompts must be >= 0, got {max_reprompts}"),
        (max_length_retries >= 0, f"max_length_retries must be >= 0, got {max_length_retries}"),
        (length_growth > 1, f"length_growth must be > 1, got {length_growth}"),
        (token_budget is None or token_budget > 0, f"token_budget must be > 0, got {token_budget}"),
        (
            max_completion_tokens is None or max_completion_tokens > 0,
            f"max_completion_tokens must be > 0, got {max_completion_tokens}",
        ),
        (
            max_completion_cap is None or max_completion_cap > 0,
            f"max_completion_cap must be > 0, got {max_completion_cap}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise InvalidInputError(message)
