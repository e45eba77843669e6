"""The extraction loop: ask, parse, repair, validate, re-ask - with no Prefect in it.

`run_extraction` drives one record through as many calls as it needs, within
bounds: a `finish_reason == "length"` answer is never parsed, only re-sent with more
room; a validation failure is re-asked at most `max_reprompts` times, with a
conversation that never grows beyond one correction pair; a refusal or a content
filter is final; `token_budget` stops before an attempt that could exceed it.
Every attempt is paid for, so usage and cost are summed over all of them. The schema's
own code raising on an answer (a validator's `KeyError`, a default factory) and a value
no output could hold (`extraction.storable`) are validation problems like any other.

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

import dataclasses
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Generic, TypeVar, cast

from pydantic import BaseModel, ValidationError

from prefect_openai_chat.errors import (
    ContentFilteredError,
    TruncatedOutputError,
)
from prefect_openai_chat.extraction.answer_checks import dump_storable, off_schema, validated
from prefect_openai_chat.extraction.answer_sizes import (
    ANSWER_SIZES,
    MIN_COMPLETION_ROOM,
    room_needed,
)
from prefect_openai_chat.extraction.options import ExtractionOptions
from prefect_openai_chat.extraction.parsing import (
    ParseOutcome,
    before_placeholders,
    parse_output,
    parse_result,
)
from prefect_openai_chat.extraction.partial import (
    PartialAsk,
    merge_answer,
    partial_answer,
    plan_partial,
)
from prefect_openai_chat.extraction.prompts import (
    TextOrMessages,
    build_partial_request,
    build_record_request,
    resolve_mode,
)
from prefect_openai_chat.extraction.reprompt import (
    Problem,
    correction_for_cut,
    correction_for_fields,
    correction_for_lazy,
    correction_for_placeholders,
    correction_for_problems,
    correction_for_unparseable,
    problems_from_error,
    reprompt_messages,
)
from prefect_openai_chat.extraction.schema import ensure_model, schema_spec
from prefect_openai_chat.extraction.tally import Tally
from prefect_openai_chat.results import ChatResult, Extraction, Outcome
from prefect_openai_chat.tokens import count_message_tokens, count_text_tokens
from prefect_openai_chat.tokens import model_info as get_model_info

M = TypeVar("M", bound=BaseModel)
CallFn = Callable[[list[dict[str, Any]], dict[str, Any]], Awaitable[ChatResult]]

_DEFAULT_FIRST_LIMIT = 1024  # when a truncated answer reports no usage at all


async def run_extraction(
    call: CallFn,
    schema: type[M],
    text_or_messages: TextOrMessages,
    options: ExtractionOptions | None = None,
    **fields: Any,
) -> Extraction[M]:
    """Extract one validated `schema` value from a text (or messages) through `call`.

    Args:
        call: Sends one chat completion: `await call(messages, params) -> ChatResult`.
        schema: The pydantic model to extract; its validators take part in re-prompts.
        text_or_messages: The record's text, or chat messages holding it (never changed).
        options: An `ExtractionOptions`.
        **fields: `ExtractionOptions` fields, instead of `options` or over it
            (`model="gpt-4o-mini", max_reprompts=1`).

    Returns:
        An `Extraction[schema]`: `ok` and `value`, or `outcome` and `reason`, plus usage,
        cost, errors, raw outputs, finish reasons and request ids of every call.
    """
    if options is None:
        options = ExtractionOptions(**fields)
    elif fields:
        options = dataclasses.replace(options, **fields)
    return await _Extraction(call, cast("type[M]", ensure_model(schema)), options).run(
        text_or_messages
    )


class _Extraction(Generic[M]):
    """One record's loop: send, then handle the answer by what it turned out to be.

    Each `_after_*` method returns the finished `Extraction`, or None to send again
    (with `self.messages` and `self.limit` as it left them).
    """

    def __init__(self, call: CallFn, schema: type[M], options: ExtractionOptions) -> None:
        self.call, self.schema, self.options = call, schema, options
        self.mode = resolve_mode(options.mode, options.model)
        self.tool_name = schema_spec(schema).name if self.mode == "tools" else None
        cap = get_model_info(options.model).max_output_tokens
        if options.max_completion_cap is not None:
            cap = min(cap, options.max_completion_cap)
        self.cap = cap
        first = options.max_completion_tokens
        self.limit = None if first is None else min(first, cap)
        self.tally = Tally()
        self.source: TextOrMessages = ""
        self.base_messages: list[dict[str, Any]] = []
        self.base_params: dict[str, Any] = {}
        self.messages: list[dict[str, Any]] = []
        self.params: dict[str, Any] = {}
        self.partial: PartialAsk | None = None  # what the request in flight asks for
        self.length_retries = 0
        self.last_completion = 0
        self.lazy_asked = False

    async def run(self, text_or_messages: TextOrMessages) -> Extraction[M]:
        self.source = text_or_messages
        self.base_messages, self.base_params = build_record_request(
            self.schema,
            text_or_messages,
            self.options.instructions,
            self.mode,
            model=self.options.model,
        )
        self.messages, self.params = self.base_messages, self.base_params
        while True:
            params = dict(self.params)
            if self.limit is not None:
                params["max_completion_tokens"] = self.limit
            sent = await self._send(params)
            if isinstance(sent, Extraction):
                return sent
            if sent.finish_reason == "length":
                done = self._after_length(sent, params)
            elif sent.finish_reason == "content_filter" or sent.flagged:
                done = self._after_filter()
            else:
                self.last_completion = sent.usage.completion_tokens
                done = self._after_answer(parse_result(sent))
            if done is not None:
                return done

    def _finish(
        self, outcome: Outcome, reason: str | None, value: M | None = None
    ) -> Extraction[M]:
        return self.tally.finish(self.schema, outcome, reason, value)

    async def _send(self, params: dict[str, Any]) -> ChatResult | Extraction[M]:
        """One call's result (a cut or filtered answer too), or the finished extraction."""
        options, tally = self.options, self.tally
        if options.token_budget is not None:
            stop = _fit_budget(
                self.messages,
                params,
                options.model,
                options.token_budget,
                tally.usage.total_tokens,
                self.cap,
            )
            if stop is not None:
                return self._finish("budget", stop)
        try:
            result = await self.call(self.messages, params)
        except (TruncatedOutputError, ContentFilteredError) as exc:
            partial = exc.partial if isinstance(exc.partial, ChatResult) else ChatResult()
            reason = "length" if isinstance(exc, TruncatedOutputError) else "content_filter"
            result = partial.model_copy(update={"finish_reason": reason})
        except Exception as exc:
            if options.on_error == "raise":
                raise
            tally.calls += 1
            tally.error(f"{type(exc).__name__}: {exc}")
            return self._finish("error", f"the call failed: {type(exc).__name__}: {exc}")
        tally.add(result, options.model)
        return result

    def _after_length(self, result: ChatResult, params: dict[str, Any]) -> Extraction[M] | None:
        """A cut answer is never taken as it is: its complete fields are kept and the rest
        asked for, or it is sent again with more room, within bounds."""
        options, tally = self.options, self.tally
        used = params.get("max_completion_tokens") or result.usage.completion_tokens
        used = (
            used or count_text_tokens(tally.raw_outputs[-1], options.model) or _DEFAULT_FIRST_LIMIT
        )
        tally.error(f"truncated at the token limit ({used} completion tokens); not parsed")
        rest = self._rest(tally.raw_outputs[-1])
        if self.length_retries < options.max_length_retries and rest is not None:
            self.length_retries += 1
            self._send_partial(rest, correction_for_cut(rest.keys, tool_name=self.tool_name))
            return None
        largest = ANSWER_SIZES.largest(self.schema)
        needed = room_needed(used, largest, options.length_growth, self.length_retries == 0)
        grown = min(needed, self.cap)
        if self.length_retries < options.max_length_retries and grown > used:
            self.limit = grown
            self.length_retries += 1
            return None
        why = (
            f"the model's limit of {self.cap} completion tokens was reached"
            if grown <= used
            else f"{self.length_retries} retries with more room did not help"
        )
        return self._finish(
            "truncated",
            f"the answer was cut at the token limit on every attempt ({why}, last limit"
            f" {used}); raise max_completion_tokens or max_completion_cap, or ask for less",
        )

    def _after_filter(self) -> Extraction[M]:
        self.tally.error("stopped by the provider's content filter")
        return self._finish("content_filter", "the provider's content filter stopped the answer")

    def _after_answer(self, parsed: ParseOutcome) -> Extraction[M] | None:
        """A complete answer: a value, a final refusal, or a re-ask with what was wrong."""
        tally = self.tally
        if parsed.kind == "refusal":
            tally.error(parsed.reason or "refused")
            return self._finish("refused", f"the model {parsed.reason or 'refused'}")
        if parsed.cut:
            return self._after_cut(parsed)
        if parsed.kind == "json":
            data = parsed.data if self.partial is None else merge_answer(self.partial, parsed.data)
            checked = validated(self.schema, data)
            ask: PartialAsk | None = None
            if isinstance(checked, ValidationError):
                problems = problems_from_error(checked, self.schema)
                if self.options.reask_scope == "fields":
                    ask = plan_partial(self.schema, data, checked)
            else:
                value, unwrapped = checked
                stray = None if unwrapped else self._off_schema(parsed.data)
                if stray is not None and self.partial is not None:  # the same fields again
                    tally.error(str(stray))
                    said = partial_answer(self.partial, parsed.data)  # shown as the answer
                    again = dataclasses.replace(self.partial, wrong=said)
                    return self._reask_fields(again, [stray], f"invalid: {stray}")
                dumped = stray or dump_storable(value)
                if not isinstance(dumped, Problem):
                    if self.partial is None:  # a whole answer: what such answers need
                        ANSWER_SIZES.seen(self.schema, self.last_completion)
                    tally.repaired = parsed.repaired or unwrapped
                    done = self._finish("ok", None, value)
                    done._value_data = dumped  # dumped once: `record_outcome` takes it
                    return done
                problems = [dumped]
            problem_text = "; ".join(str(p) for p in problems)
            tally.error(problem_text)
            failure = f"invalid: {problem_text}"
            if ask is not None:
                return self._reask_fields(ask, problems, failure)
            correction = correction_for_problems(problems, tool_name=self.tool_name)
            if self.partial is not None:  # show the whole object the problems refer to
                parsed = dataclasses.replace(parsed, data=data, fixes=("json_repair",))
        elif parsed.kind == "lazy":
            tally.error(parsed.reason or "lazy answer")
            failure = f"lazy answer: {parsed.reason}"
            if self.lazy_asked:
                return self._finish("invalid", f"{failure}, also after a re-prompt")
            self.lazy_asked = True
            rest = self._rest(before_placeholders(parsed))
            if rest is not None:  # the fields written out in full stand; ask for the others
                return self._reask_rest(rest, failure)
            correction = correction_for_lazy(parsed.lazy_markers, tool_name=self.tool_name)
        else:
            tally.error(parsed.reason or "no JSON")
            failure = parsed.reason or "no JSON in the answer"
            correction = correction_for_unparseable(failure, tool_name=self.tool_name)
        return self._reprompt(parsed, failure, correction)

    def _after_cut(self, parsed: ParseOutcome) -> Extraction[M] | None:
        """An answer that ended inside a string, whatever its finish reason: its last value
        may be cut short, so it is never taken. The fields before it stand and the rest
        is asked for, as after a `length` cut; else the whole answer is asked again."""
        failure = "the answer ended inside a string (cut short): its last value is not taken"
        self.tally.error(failure)
        rest = self._rest(parsed.json_text) if self.partial is None else None
        if rest is None:
            correction = correction_for_unparseable(failure, tool_name=self.tool_name)
            return self._reprompt(parsed, failure, correction)
        done = self._spend_reprompt(failure)
        if done is not None:
            return done
        self._send_partial(rest, correction_for_cut(rest.keys, tool_name=self.tool_name))
        return None

    def _off_schema(self, answer: Any) -> Problem | None:
        """`off_schema` of the answer against what was asked: the schema, or a partial
        re-ask's fields (its answer unwrapped as `merge_answer` unwraps it)."""
        if self.partial is None:
            return off_schema(self.schema, answer)
        return off_schema(self.partial.schema, partial_answer(self.partial, answer))

    def _spend_reprompt(self, failure: str) -> Extraction[M] | None:
        """The `invalid` outcome when no re-ask is left; else None, one more re-ask counted."""
        tally = self.tally
        if tally.reprompts >= self.options.max_reprompts:
            plural = "s" * (tally.reprompts != 1)
            return self._finish("invalid", f"{failure} (after {tally.reprompts} re-prompt{plural})")
        tally.reprompts += 1
        return None

    def _reprompt(
        self, parsed: ParseOutcome, failure: str, correction: str
    ) -> Extraction[M] | None:
        done = self._spend_reprompt(failure)
        if done is not None:
            return done
        last_answer = parsed.json_text or parsed.text
        if "json_repair" in parsed.fixes:  # show the model the value the problems refer to
            last_answer = json.dumps(parsed.data, ensure_ascii=False)
        self.messages = reprompt_messages(self.base_messages, last_answer, correction)
        self.params, self.partial = self.base_params, None
        return None

    def _rest(self, cut: str | None) -> PartialAsk | None:
        """The re-ask for the fields a cut (or lazy) answer did not finish, keeping the others.

        The cut JSON is closed locally; its last field (whose value may be cut) is left
        out, and the others stand if they validate. None when that gives nothing to keep
        (no object, or not one field finished), or with `reask_scope="whole"`: the
        request is then sent again, or re-asked whole, instead.
        """
        if cut is None or self.options.reask_scope != "fields":
            return None
        parsed = parse_output(cut)
        if parsed.kind != "json" or not isinstance(parsed.data, dict) or len(parsed.data) < 2:
            return None
        data = dict(parsed.data)
        data.pop(next(reversed(data)))  # the field being written when the answer was cut
        if self.partial is not None:
            data = merge_answer(self.partial, data)
        checked = validated(self.schema, data)
        error = checked if isinstance(checked, ValidationError) else None
        ask = plan_partial(self.schema, data, error)
        if ask is None or not ask.kept:
            return None
        return replace(ask, wrong={})

    def _reask_rest(self, ask: PartialAsk, failure: str) -> Extraction[M] | None:
        """Ask, as one re-ask, for the fields a lazy answer left as placeholders."""
        done = self._spend_reprompt(failure)
        if done is not None:
            return done
        self._send_partial(ask, correction_for_placeholders(ask.keys, tool_name=self.tool_name))
        return None

    def _send_partial(self, ask: PartialAsk, correction: str) -> None:
        self.messages, self.params = build_partial_request(
            ask.schema,
            self.source,
            ask.wrong,
            correction,
            self.options.instructions,
            self.mode,
            model=self.options.model,
        )
        self.partial = ask

    def _reask_fields(
        self, ask: PartialAsk, problems: list[Problem], failure: str
    ) -> Extraction[M] | None:
        """Ask again for the invalid fields alone, keeping the ones that validated."""
        done = self._spend_reprompt(failure)
        if done is not None:
            return done
        correction = correction_for_fields(problems, ask.keys, tool_name=self.tool_name)
        self._send_partial(ask, correction)
        return None


def _fit_budget(
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    model: str,
    budget: int,
    spent: int,
    cap: int,
) -> str | None:
    """Set or check the completion room against the budget; a reason to stop, else None."""
    prompt = count_message_tokens(
        messages, model, params.get("tools"), response_format=params.get("response_format")
    )
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
