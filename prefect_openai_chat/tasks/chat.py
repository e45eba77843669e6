"""Chat completion tasks: one call, or one stream, returning a `ChatResult`.

Example:
    ```python
    from prefect import flow
    from prefect_openai_chat import ChatModel, chat_completion

    @flow
    def greet() -> str | None:
        result = chat_completion("my-chat-model", [{"role": "user", "content": "Hello"}])
        return result.content
    ```
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from prefect_openai_chat._sync import run_sync
from prefect_openai_chat.blocks import ChatModel
from prefect_openai_chat.chat.runner import DeltaCallback
from prefect_openai_chat.redaction import redact_exception
from prefect_openai_chat.results import ChatResult
from prefect_openai_chat.tasks._common import TASK_TIER, assemble, chat_run_name, log_result

_TASK_OPTIONS: dict[str, Any] = {
    "cache_policy": NO_CACHE,
    "task_run_name": chat_run_name,
    **TASK_TIER,
}


async def _chat(
    chat_model: ChatModel | str,
    messages: Sequence[Any],
    stream: bool,
    on_delta: DeltaCallback | None,
    overrides: dict[str, Any],
) -> ChatResult:
    try:
        _, runner = await assemble(chat_model)
        result = await runner.complete(messages, stream=stream, on_delta=on_delta, **overrides)
    except Exception as exc:
        redact_exception(exc)  # also what fails before the runner's own boundary
        raise
    log_result(result, "stream" if stream else "chat")
    return result


@task(name="achat_completion", **_TASK_OPTIONS)
async def achat_completion(
    chat_model: ChatModel | str, messages: Sequence[Any], **overrides: Any
) -> ChatResult:
    """Send one chat completion and return its `ChatResult`.

    Args:
        chat_model: A `ChatModel` block, or the name of a saved one.
        messages: The conversation, as `{"role": ..., "content": ...}` dicts.
        **overrides: Request parameters for this call (`temperature`, `tools`, ...).

    Raises:
        InvalidInputError: malformed input, before any HTTP call.
        TruncatedOutputError: the answer hit the token limit.
        ContentFilteredError: the content filter stopped the answer.
    """
    return await _chat(chat_model, messages, False, None, overrides)


@task(name="chat_completion", **_TASK_OPTIONS)
def chat_completion(
    chat_model: ChatModel | str, messages: Sequence[Any], **overrides: Any
) -> ChatResult:
    """Sync twin of `achat_completion`."""
    return run_sync(_chat(chat_model, messages, False, None, overrides))


@task(name="astream_chat_completion", **_TASK_OPTIONS)
async def astream_chat_completion(
    chat_model: ChatModel | str,
    messages: Sequence[Any],
    on_delta: DeltaCallback | None = None,
    **overrides: Any,
) -> ChatResult:
    """Stream one chat completion; `on_delta` sees each text piece; returns the whole result.

    A stream cut before its finish reason, a stall longer than the read timeout
    and a mid-stream error event are retryable errors, never a partial answer.
    """
    return await _chat(chat_model, messages, True, on_delta, overrides)


@task(name="stream_chat_completion", **_TASK_OPTIONS)
def stream_chat_completion(
    chat_model: ChatModel | str,
    messages: Sequence[Any],
    on_delta: DeltaCallback | None = None,
    **overrides: Any,
) -> ChatResult:
    """Sync twin of `astream_chat_completion`."""
    return run_sync(_chat(chat_model, messages, True, on_delta, overrides))
