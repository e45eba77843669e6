"""Extraction tasks: free text in, a validated pydantic value (or the reason why not) out.

Example:
    ```python
    from prefect import flow
    from pydantic import BaseModel
    from prefect_openai_chat import extract

    class Invoice(BaseModel):
        customer: str
        total: float

    @flow
    def one_invoice(text: str) -> Invoice | None:
        return extract("my-chat-model", Invoice, text).value
    ```
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from prefect_openai_chat._sync import sync_twin
from prefect_openai_chat.blocks import ChatModel
from prefect_openai_chat.chat import ChatRunner
from prefect_openai_chat.errors import StaticFallbackError
from prefect_openai_chat.extraction import (
    CallFn,
    ExtractionOptions,
    ensure_model,
    extraction_cache_key,
    run_extraction,
)
from prefect_openai_chat.extraction.ledger import RecordClaims
from prefect_openai_chat.extraction.prompts import TextOrMessages
from prefect_openai_chat.extraction.spec import ExtractionSpec
from prefect_openai_chat.redaction import redact_exception
from prefect_openai_chat.results import FINAL_OUTCOMES, ChatResult, Extraction
from prefect_openai_chat.tasks._common import (
    TASK_TIER,
    assemble,
    model_label,
    record_ledger,
    run_logger,
)

_counter = itertools.count(1)


def runner_call(runner: ChatRunner, errors: list[BaseException] | None = None) -> CallFn:
    """The `call(messages, params)` the extraction loop sends its attempts through.

    A static fallback's text is not an answer to extract from: it raises
    `StaticFallbackError` instead. Errors are appended to `errors` when given.
    """

    async def call(messages: list[dict[str, Any]], params: dict[str, Any]) -> ChatResult:
        try:
            result = await runner.complete(messages, **params)
            if result.answered_by == "static":
                raise StaticFallbackError(
                    "the endpoint is down and only the static fallback answered;"
                    " the record was not extracted"
                )
            return result
        except Exception as exc:
            if errors is not None:
                errors.append(exc)
            raise

    return call


def extraction_key(chat_model: ChatModel, spec: ExtractionSpec, text: TextOrMessages) -> str:
    """The record ledger's key of `text` under `spec` and `chat_model`: what determines the
    answer (content, schema, instructions, mode, re-asks, token budget, model and
    generation parameters), never credentials or clients."""
    params = {**chat_model.generation_params(), "max_reprompts": spec.max_reprompts}
    params["token_budget"] = spec.token_budget
    params.pop("model", None)
    return extraction_cache_key(
        spec.schema_class, text, spec.instructions, spec.mode, chat_model.model, params
    )


async def _claimed(
    claims: RecordClaims,
    key: str,
    schema: type[BaseModel],
    runner: ChatRunner,
    text_or_messages: TextOrMessages,
    options: ExtractionOptions,
) -> Extraction[Any]:
    """The extraction stored under `key`, or made now under a claim on it and stored when
    final: two calls on the same inputs, here or on another worker, pay once."""
    stored = (await asyncio.to_thread(claims.ledger.get_many, [key])).get(key)
    if stored is None and not await claims.try_claim(key):
        stored = await claims.wait(key)  # another call holds it: its outcome, or the claim
    if stored is not None:
        run_logger().info("extract %s: from the cache", schema.__name__)
        return Extraction[schema].model_validate_json(stored)  # type: ignore[valid-type]
    try:
        result = await run_extraction(runner_call(runner), schema, text_or_messages, options)
    except BaseException:
        await claims.release(key)  # not finished: the next call tries again
        raise
    if result.outcome in FINAL_OUTCOMES:
        await claims.complete(key, result.model_dump_json())
    else:
        await claims.release(key)  # an error (an outage) is tried again next time
    return result


def _run_name(parameters: dict[str, Any]) -> str:
    schema = parameters.get("schema")
    name = getattr(schema, "__name__", "value")
    return f"extract {name} {model_label(parameters.get('chat_model'))} #{next(_counter)}"


async def _aextract(
    chat_model: ChatModel | str,
    schema: type[BaseModel],
    text_or_messages: TextOrMessages,
    instructions: str | None = None,
    mode: str = "auto",
    max_reprompts: int = 2,
    token_budget: int | None = None,
    cache: bool | str | Path = True,
) -> Extraction[Any]:
    """Extract one validated `schema` value from a text or a conversation.

    The answer is parsed cheapest first (code fences and prose stripped, JSON repaired
    locally), validated with the schema's own validators, and re-asked with a list of
    what was wrong. A cut answer is re-sent with more room, never parsed.

    Like `extract_chunk` and `extract_records`, it keeps final outcomes in the record
    ledger by default, under what determines them (text, schema, instructions, mode,
    model and generation parameters), so a re-run does not pay again; it claims the
    record before its first call, so two calls on the same inputs at once (in this
    process or on another worker sharing the ledger) pay once: the second waits for
    the first's outcome. `cache=False` always asks. Errors are never stored.

    Args:
        chat_model: A `ChatModel` block, or the name of a saved one.
        schema: The pydantic model to extract.
        text_or_messages: The source text, or chat messages that hold it (never changed).
        instructions: What to extract, in words; a sensible default otherwise.
        mode: `auto`, `json_schema`, `json_object` or `tools`.
        max_reprompts: Re-asks after an invalid answer.
        token_budget: Most tokens to spend on this record over all attempts.
        cache: The record ledger: True for the default (`PREFECT_OPENAI_CHAT_CACHE` when
            set, else a SQLite file under PREFECT_HOME), a SQLite path, a `postgresql://`
            URL shared by every host, or False: always ask.

    Returns:
        An `Extraction`: `ok` and `value`, or `outcome` and `reason`; usage and cost
        summed over every attempt.
    """
    model_cls = ensure_model(schema)
    spec = ExtractionSpec(
        schema=model_cls,
        instructions=instructions,
        mode=mode,
        max_reprompts=max_reprompts,
        token_budget=token_budget,
    )
    try:
        model, runner = await assemble(chat_model)
        options = spec.options(
            runner.settings.model, runner.settings.defaults.get("max_completion_tokens")
        )
        ledger = record_ledger(cache, connect=False)
        if ledger is None:
            result = await run_extraction(runner_call(runner), model_cls, text_or_messages, options)
        else:
            key = "extract-" + extraction_key(model, spec, text_or_messages)
            try:
                async with RecordClaims(ledger) as claims:
                    result = await _claimed(
                        claims, key, model_cls, runner, text_or_messages, options
                    )
            finally:
                ledger.close()
    except Exception as exc:
        redact_exception(exc)  # also what fails before the runner's own boundary
        raise
    run_logger().info(
        "extract %s outcome=%s calls=%d reprompts=%d repaired=%s tokens=%d cost=%s%s",
        model_cls.__name__,
        result.outcome,
        result.calls,
        result.reprompts,
        result.repaired,
        result.usage.total_tokens,
        "unknown" if result.cost_usd is None else f"${result.cost_usd:.6f}",
        "" if result.ok else f" reason={result.reason}",
    )
    return result


# The ledger is looked up in the task (`_claimed`), after the block is loaded without
# blocking: a Prefect `cache_key_fn` is sync and would load a named block on the loop.
_EXTRACT_OPTIONS: dict[str, Any] = {
    "cache_policy": NO_CACHE,
    "task_run_name": _run_name,
    **TASK_TIER,
}


aextract = task(name="aextract", **_EXTRACT_OPTIONS)(_aextract)
extract = task(name="extract", **_EXTRACT_OPTIONS)(sync_twin(_aextract))
