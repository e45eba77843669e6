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

import itertools
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.results import get_result_store
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
from prefect_openai_chat.extraction.prompts import TextOrMessages
from prefect_openai_chat.redaction import redact_exception
from prefect_openai_chat.results import FINAL_OUTCOMES, ChatResult, Extraction
from prefect_openai_chat.tasks._common import (
    TASK_TIER,
    assemble,
    model_label,
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


def extraction_key(
    chat_model: ChatModel,
    schema: type[BaseModel],
    text_or_messages: TextOrMessages,
    instructions: str | None,
    mode: str,
    max_reprompts: int,
    token_budget: int | None,
) -> str:
    """What determines the answer: content, schema, prompt, model, generation parameters."""
    params = {**chat_model.generation_params(), "max_reprompts": max_reprompts}
    params["token_budget"] = token_budget
    params.pop("model", None)
    return extraction_cache_key(
        schema, text_or_messages, instructions, mode, chat_model.model, params
    )


async def _cached(key: str, schema: type[BaseModel]) -> Extraction[Any] | None:
    """The extraction stored under `key` in Prefect's result storage, if any."""
    store = get_result_store()
    if not await store.aexists(key):
        return None
    data = (await store.aread(key)).result
    return Extraction[schema].model_validate(data)  # type: ignore[valid-type]


async def _store(key: str, result: Extraction[Any]) -> None:
    """Keep a final outcome; an error (an outage) is tried again next time."""
    if result.outcome in FINAL_OUTCOMES:
        await get_result_store().awrite(result.model_dump(mode="json"), key=key)


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
    cache: bool = True,
) -> Extraction[Any]:
    """Extract one validated `schema` value from a text or a conversation.

    The answer is parsed cheapest first (code fences and prose stripped, JSON repaired
    locally), validated with the schema's own validators, and re-asked with a list of
    what was wrong. A cut answer is re-sent with more room, never parsed.

    Like `extract_batch` and `extract_records`, it caches by default: a final outcome is
    kept in Prefect's result storage under what determines it (text, schema,
    instructions, mode, model and generation parameters), with no expiry, so a re-run
    does not pay again; `cache=False` always asks. Errors are never cached.

    Args:
        chat_model: A `ChatModel` block, or the name of a saved one.
        schema: The pydantic model to extract.
        text_or_messages: The source text, or chat messages that hold it (never changed).
        instructions: What to extract, in words; a sensible default otherwise.
        mode: `auto`, `json_schema`, `json_object` or `tools`.
        max_reprompts: Re-asks after an invalid answer.
        token_budget: Most tokens to spend on this record over all attempts.
        cache: Reuse (and keep) the outcome of the same inputs; False: always ask.

    Returns:
        An `Extraction`: `ok` and `value`, or `outcome` and `reason`; usage and cost
        summed over every attempt.
    """
    model_cls = ensure_model(schema)
    try:
        model, runner = await assemble(chat_model)
        key = None
        if cache:
            key = "extract-" + extraction_key(
                model, model_cls, text_or_messages, instructions, mode, max_reprompts, token_budget
            )
            hit = await _cached(key, model_cls)
            if hit is not None:
                run_logger().info("extract %s: from the cache", model_cls.__name__)
                return hit
        options = ExtractionOptions(
            model=runner.settings.model,
            instructions=instructions,
            mode=mode,
            max_reprompts=max_reprompts,
            token_budget=token_budget,
            max_completion_tokens=runner.settings.defaults.get("max_completion_tokens"),
        )
        result = await run_extraction(runner_call(runner), model_cls, text_or_messages, options)
        if key is not None:
            await _store(key, result)
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


# The cache is looked up in the task (`_cached`), after the block is loaded without
# blocking: a Prefect `cache_key_fn` is sync and would load a named block on the loop.
_EXTRACT_OPTIONS: dict[str, Any] = {
    "cache_policy": NO_CACHE,
    "task_run_name": _run_name,
    **TASK_TIER,
}


aextract = task(name="aextract", **_EXTRACT_OPTIONS)(_aextract)
extract = task(name="extract", **_EXTRACT_OPTIONS)(sync_twin(_aextract))
