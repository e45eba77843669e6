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

from prefect_openai_chat._sync import sync_twin
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


async def _achat_completion(
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


async def _astream_chat_completion(
    chat_model: ChatModel | str,
    messages: Sequence[Any],
    on_delta: DeltaCallback | None = None,
    **overrides: Any,
) -> ChatResult:
    """Stream one chat completion and return the finished `ChatResult`, not a stream.

    Unlike the SDK's `create(stream=True)`, which returns an iterator of chunks, this
    task returns once the stream has ended, with the same `ChatResult` as
    `chat_completion` (content, tool calls, usage, cost). What streaming adds is
    `on_delta`, called with each text piece as it arrives (to show progress or pass the
    text on), and `time_to_first_token_s` on the result. A task result must be a
    finished value that Prefect can persist and retry, so there is no chunk iterator.

    A stream cut before its finish reason, a stall longer than the read timeout
    and a mid-stream error event are retryable errors, never a partial answer.

    Args:
        chat_model: A `ChatModel` block, or the name of a saved one.
        messages: The conversation, as `{"role": ..., "content": ...}` dicts.
        on_delta: Called with each piece of text as it arrives.
        **overrides: Request parameters for this call (`temperature`, `tools`, ...).
    """
    return await _chat(chat_model, messages, True, on_delta, overrides)


achat_completion = task(name="achat_completion", **_TASK_OPTIONS)(_achat_completion)
chat_completion = task(name="chat_completion", **_TASK_OPTIONS)(sync_twin(_achat_completion))
astream_chat_completion = task(name="astream_chat_completion", **_TASK_OPTIONS)(
    _astream_chat_completion
)
stream_chat_completion = task(name="stream_chat_completion", **_TASK_OPTIONS)(
    sync_twin(_astream_chat_completion)
)
