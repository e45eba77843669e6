"""Prefect 3 tasks, blocks and flows that make OpenAI Chat Completions safe in pipelines.

Names load on first use, so that `prefect_openai_chat.simulator` or
`prefect_openai_chat.tokens` can be imported without importing Prefect. The error
classes are here too: `from prefect_openai_chat import TruncatedOutputError`.

Example:
    >>> from prefect_openai_chat import count_message_tokens
    >>> count_message_tokens([{"role": "user", "content": "Hello"}], "gpt-4o-mini")
    8
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "OpenAICredentials": "blocks",
    "AzureOpenAICredentials": "blocks",
    "ChatModel": "blocks",
    "chat_completion": "tasks",
    "achat_completion": "tasks",
    "stream_chat_completion": "tasks",
    "astream_chat_completion": "tasks",
    "extract": "tasks",
    "aextract": "tasks",
    "extract_chunk": "tasks",
    "aextract_chunk": "tasks",
    "ExtractionSpec": "extraction.spec",
    "RunOptions": "flows.options",
    "BatchApiOptions": "extraction.batch_api",
    "ChatResult": "results",
    "Extraction": "results",
    "ChunkReport": "results",
    "RecordOutcome": "results",
    "Usage": "results",
    "AttemptTimeoutError": "errors",
    "CallTimeoutError": "errors",
    "ChatError": "errors",
    "CircuitOpenError": "errors",
    "ContentFilteredError": "errors",
    "ContextWindowExceededError": "errors",
    "CredentialsRejectedError": "errors",
    "IncompleteStreamError": "errors",
    "InsufficientQuotaError": "errors",
    "LedgerError": "errors",
    "InvalidInputError": "errors",
    "MalformedResponseError": "errors",
    "MissingFallbackError": "errors",
    "ProxyRefusedError": "errors",
    "RateLimitPatienceError": "errors",
    "StaticFallbackError": "errors",
    "TLSConfigurationError": "errors",
    "TruncatedOutputError": "errors",
    "ToolCall": "results",
    "count_message_tokens": "tokens",
    "estimate_cost": "tokens",
    "reset_process_state": "process",
}
__all__ = [
    "AttemptTimeoutError",
    "AzureOpenAICredentials",
    "BatchApiOptions",
    "CallTimeoutError",
    "ChatError",
    "ChatModel",
    "ChatResult",
    "ChunkReport",
    "CircuitOpenError",
    "ContentFilteredError",
    "ContextWindowExceededError",
    "CredentialsRejectedError",
    "Extraction",
    "ExtractionSpec",
    "IncompleteStreamError",
    "InsufficientQuotaError",
    "InvalidInputError",
    "LedgerError",
    "MalformedResponseError",
    "MissingFallbackError",
    "OpenAICredentials",
    "ProxyRefusedError",
    "RateLimitPatienceError",
    "RecordOutcome",
    "RunOptions",
    "StaticFallbackError",
    "TLSConfigurationError",
    "ToolCall",
    "TruncatedOutputError",
    "Usage",
    "achat_completion",
    "aextract",
    "aextract_chunk",
    "astream_chat_completion",
    "chat_completion",
    "count_message_tokens",
    "estimate_cost",
    "extract",
    "extract_chunk",
    "reset_process_state",
    "stream_chat_completion",
]

if TYPE_CHECKING:
    from prefect_openai_chat.blocks import AzureOpenAICredentials, ChatModel, OpenAICredentials
    from prefect_openai_chat.errors import (
        AttemptTimeoutError,
        CallTimeoutError,
        ChatError,
        CircuitOpenError,
        ContentFilteredError,
        ContextWindowExceededError,
        CredentialsRejectedError,
        IncompleteStreamError,
        InsufficientQuotaError,
        InvalidInputError,
        LedgerError,
        MalformedResponseError,
        MissingFallbackError,
        ProxyRefusedError,
        RateLimitPatienceError,
        StaticFallbackError,
        TLSConfigurationError,
        TruncatedOutputError,
    )
    from prefect_openai_chat.extraction.batch_api import BatchApiOptions
    from prefect_openai_chat.extraction.spec import ExtractionSpec
    from prefect_openai_chat.flows.options import RunOptions
    from prefect_openai_chat.process import reset_process_state
    from prefect_openai_chat.results import (
        ChatResult,
        ChunkReport,
        Extraction,
        RecordOutcome,
        ToolCall,
        Usage,
    )
    from prefect_openai_chat.tasks import (
        achat_completion,
        aextract,
        aextract_chunk,
        astream_chat_completion,
        chat_completion,
        extract,
        extract_chunk,
        stream_chat_completion,
    )
    from prefect_openai_chat.tokens import count_message_tokens, estimate_cost


# Old names, still importable with a DeprecationWarning (docs/migrating.md).
_RENAMED = {"BatchReport": "results", "extract_batch": "tasks", "aextract_batch": "tasks"}


def __getattr__(name: str) -> Any:
    if name in _RENAMED:  # the module's own __getattr__ warns; not cached, so it warns each time
        return getattr(importlib.import_module(f"prefect_openai_chat.{_RENAMED[name]}"), name)
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'prefect_openai_chat' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"prefect_openai_chat.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
