"""What every task shares: resolving the `ChatModel`, run names, the one log line."""

from __future__ import annotations

import itertools
import logging
import threading
from typing import Any, SupportsIndex, overload

from prefect.exceptions import MissingContextError, ObjectNotFound
from prefect.logging import get_run_logger

from prefect_openai_chat.blocks import ChatModel
from prefect_openai_chat.chat import ChatRunner
from prefect_openai_chat.errors import TASK_DELAY_MARK, InvalidInputError, MissingFallbackError
from prefect_openai_chat.resilience import RetryPolicy, make_retry_condition
from prefect_openai_chat.resilience.policy import MAX_TASK_RETRIES
from prefect_openai_chat.results import ChatResult
from prefect_openai_chat.tasks.events import install_circuit_events

_counter = itertools.count(1)

# The task tier. Prefect's `retries` is only the ceiling: the condition, a plain function
# generated from the policy, re-runs a task only for errors that outlast the in-call tier
# and only as often as the raising ChatModel's own `task_retries` allows.
TASK_RETRY_CEILING = MAX_TASK_RETRIES
_policy_condition = make_retry_condition(RetryPolicy())
_decided = threading.local()  # the delay the condition just read from the raising block


class BlockRetryDelay(list[float]):
    """Prefect's `retry_delay_seconds` that follows the raising `ChatModel`.

    Prefect reads the delay right after calling the retry condition, in the same thread;
    the condition records the delay the failed call's block asked for (its
    `circuit_reset_timeout_s`, marked on the exception by the runner), and this list
    answers it. Without a mark it answers the default policy's delay. A task given
    `.with_options(retry_delay_seconds=...)` uses that fixed delay instead.
    """

    def __init__(self, default: float) -> None:
        super().__init__([default])
        self.default = default

    @overload
    def __getitem__(self, index: SupportsIndex) -> float: ...
    @overload
    def __getitem__(self, index: slice) -> list[float]: ...
    def __getitem__(self, index: SupportsIndex | slice) -> float | list[float]:
        if isinstance(index, slice):
            return list.__getitem__(self, index)
        delay = getattr(_decided, "delay", None)
        _decided.delay = None
        return self.default if delay is None else float(delay)


def retry_condition(task: Any, task_run: Any, state: Any) -> Any:
    """The task tier's `retry_condition_fn`: the policy's answer, and the block's delay."""
    data = getattr(state, "data", None)
    _decided.delay = getattr(data, TASK_DELAY_MARK, None)
    return _policy_condition(task, task_run, state)


TASK_TIER: dict[str, Any] = {
    "retries": TASK_RETRY_CEILING,
    "retry_delay_seconds": BlockRetryDelay(RetryPolicy().task_retry_delay_s),
    "retry_condition_fn": retry_condition,
}


async def resolve_chat_model(chat_model: ChatModel | str) -> ChatModel:
    """Return the block itself, or load the saved `ChatModel` of that name."""
    if isinstance(chat_model, ChatModel):
        return chat_model
    if not isinstance(chat_model, str) or not chat_model.strip():
        raise InvalidInputError(
            f"chat_model must be a ChatModel block or the name of a saved one, got {chat_model!r}"
        )
    try:
        return await ChatModel.aload(chat_model.strip())
    except (ValueError, ObjectNotFound) as exc:
        raise InvalidInputError(
            f"no saved ChatModel block named {chat_model!r}; save one with"
            " ChatModel(...).save(name) or `prefect-openai-chat setup`, or pass the block itself"
        ) from exc


async def build_runner(chat_model: ChatModel | str) -> tuple[ChatModel, ChatRunner]:
    """The block and its runner, with its fallbacks and credential reloading.

    A 401 reloads the credentials once: the saved block again (when named), and the
    environment variable read anew; the call is retried only if the key changed.
    """
    install_circuit_events()
    model = await resolve_chat_model(chat_model)
    current = [model]
    key_in_use = [model.credentials.cache_key()]

    async def reload_credentials() -> bool:
        fresh = await resolve_chat_model(chat_model) if isinstance(chat_model, str) else model
        try:
            fresh_key = fresh.credentials.cache_key()
        except InvalidInputError:
            return False
        changed = fresh_key != key_in_use[0]
        current[0], key_in_use[0] = fresh, fresh_key
        return changed

    fallbacks = [SavedFallback(name, model.model) for name in model.fallback_models]
    cached: list[Any] = [None, None]  # (key, client): one lookup per key, not per attempt

    def client() -> Any:
        if cached[0] != key_in_use[0]:
            cached[:] = [key_in_use[0], current[0].get_client(async_client=True)]
        return cached[1]

    return model, model.runner(
        fallbacks=fallbacks, reload_credentials=reload_credentials, client=client
    )


class SavedFallback:
    """Loads the saved `ChatModel` block of a fallback the first time a call needs it."""

    def __init__(self, name: str, primary: str) -> None:
        self.name, self.primary = name, primary
        self._runner: ChatRunner | None = None

    async def __call__(self) -> ChatRunner:
        if self._runner is None:
            try:
                model: ChatModel = await ChatModel.aload(self.name)
            except (ValueError, ObjectNotFound):
                raise MissingFallbackError(
                    f"fallback {self.name!r} of the ChatModel for {self.primary!r} is not a saved"
                    f" ChatModel block; save one with ChatModel(...).save({self.name!r}), or"
                    " remove it from fallback_models"
                ) from None
            self._runner = model.runner(name=self.name)
        return self._runner


def model_label(chat_model: Any) -> str:
    """The model name for run names, whether given a block or a block name."""
    return chat_model.model if isinstance(chat_model, ChatModel) else str(chat_model)


def chat_run_name(parameters: dict[str, Any]) -> str:
    """`chat gpt-4o-mini #12`: the model and a per-process call number."""
    return f"chat {model_label(parameters.get('chat_model'))} #{next(_counter)}"


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The Prefect run logger inside a run, the package logger outside one."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("prefect_openai_chat")


def log_result(result: ChatResult, what: str = "chat") -> None:
    """One INFO line per call: model, request id, tokens, cost, latency, attempts. No prompt."""
    usage = result.usage
    cost = "unknown" if result.cost_usd is None else f"${result.cost_usd:.6f}"
    ttft = (
        "" if result.time_to_first_token_s is None else f" ttft={result.time_to_first_token_s:.3f}s"
    )
    run_logger().info(
        "%s model=%s request_id=%s finish=%s tokens=%d+%d (cached %d) cost=%s latency=%.3fs%s"
        " attempts=%d answered_by=%s",
        what,
        result.model,
        result.request_id,
        result.finish_reason,
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.cached_tokens,
        cost,
        result.latency_s,
        ttft,
        result.attempts,
        result.answered_by,
    )
