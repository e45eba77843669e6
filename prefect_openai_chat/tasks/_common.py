"""What every task shares: the task tier's Prefect options, run names, the one log line.

Runners come from `blocks/assembly.py` (`RUNNERS.assemble`).
"""

from __future__ import annotations

import itertools
import logging
import threading
from pathlib import Path
from typing import Any, SupportsIndex, overload

from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

from prefect_openai_chat.blocks import ChatModel
from prefect_openai_chat.blocks.assembly import RUNNERS
from prefect_openai_chat.chat import ChatRunner
from prefect_openai_chat.extraction.ledger import Ledger, ledger_file, open_ledger
from prefect_openai_chat.extraction.ledger.opening import CacheSetting
from prefect_openai_chat.resilience import RetryPolicy, make_retry_condition
from prefect_openai_chat.resilience.policy import MAX_TASK_RETRIES
from prefect_openai_chat.results import ChatResult
from prefect_openai_chat.tasks.events import install_circuit_events
from prefect_openai_chat.telemetry import install_run_ids

_counter = itertools.count(1)

# The task tier. Prefect's `retries` is only the ceiling: the condition, the policy's
# `task_retry_delay` adapted to Prefect, re-runs a task only for errors that outlast the
# in-call tier and only as often as the raising ChatModel's own `task_retries` allows.
TASK_RETRY_CEILING = MAX_TASK_RETRIES
_decided = threading.local()  # the delay the condition just decided, for BlockRetryDelay


class BlockRetryDelay(list[float]):
    """Prefect's `retry_delay_seconds` that follows the raising `ChatModel`.

    Prefect reads the delay right after calling the retry condition, in the same thread;
    the condition records the delay the task tier decided (the failed call's block's
    `circuit.reset_timeout_s`, marked on the exception by the runner), and this list
    answers it. Without one it answers the default policy's delay. A task given
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


def _remember_delay(delay: float) -> None:
    _decided.delay = delay


retry_condition = make_retry_condition(RetryPolicy(), on_retry=_remember_delay)

TASK_TIER: dict[str, Any] = {
    "retries": TASK_RETRY_CEILING,
    "retry_delay_seconds": BlockRetryDelay(RetryPolicy().task_retry_delay_s),
    "retry_condition_fn": retry_condition,
}


async def assemble(chat_model: ChatModel | str) -> tuple[ChatModel, ChatRunner]:
    """The block and its runner, from the one factory; circuit changes become Prefect events."""
    install_circuit_events()
    return await RUNNERS.assemble(chat_model)


def default_cache_path() -> Path:
    """Where record outcomes are kept unless told otherwise: under PREFECT_HOME."""
    from prefect.settings import get_current_settings

    return Path(get_current_settings().home) / "prefect-openai-chat" / "record-cache.sqlite"


def record_ledger(cache: CacheSetting, *, connect: bool = True) -> Ledger | None:
    """The record ledger `cache=` names, opened (None for False); `True` is the default file
    (`PREFECT_OPENAI_CHAT_CACHE` when set, else `default_cache_path()`)."""
    return open_ledger(cache, default_cache_path, connect=connect)


def ledger_path(cache: CacheSetting | None = None) -> Path | None:
    """The SQLite file `cache=` names (None for none or PostgreSQL); without `cache`, the
    default file (`default_cache_path()`).

    Example:
        >>> ledger_path("out/records.sqlite"), ledger_path(False)
        (PosixPath('out/records.sqlite'), None)
    """
    if cache is None:
        return default_cache_path()
    return ledger_file(cache, default_cache_path)


def prefect_run_ids() -> dict[str, str]:
    """The flow run and task run ids of the running Prefect context (none outside a run).

    Example:
        >>> prefect_run_ids()
        {}
    """
    ids: dict[str, str] = {}
    task_run = getattr(TaskRunContext.get(), "task_run", None)
    flow_run = getattr(FlowRunContext.get(), "flow_run", None)
    if task_run is not None:
        ids["task_run_id"] = str(task_run.id)
        if task_run.flow_run_id is not None:
            ids["flow_run_id"] = str(task_run.flow_run_id)
    if flow_run is not None:
        ids["flow_run_id"] = str(flow_run.id)
    return ids


install_run_ids(prefect_run_ids)  # OpenTelemetry spans carry the Prefect run ids


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
        result.http_attempts,
        result.answered_by,
    )
