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
    "extract_batch": "tasks",
    "aextract_batch": "tasks",
    "ChatResult": "results",
    "Extraction": "results",
    "BatchReport": "results",
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
    "BatchReport",
    "CallTimeoutError",
    "ChatError",
    "ChatModel",
    "ChatResult",
    "CircuitOpenError",
    "ContentFilteredError",
    "ContextWindowExceededError",
    "CredentialsRejectedError",
    "Extraction",
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
    "StaticFallbackError",
    "TLSConfigurationError",
    "ToolCall",
    "TruncatedOutputError",
    "Usage",
    "achat_completion",
    "aextract",
    "aextract_batch",
    "astream_chat_completion",
    "chat_completion",
    "count_message_tokens",
    "estimate_cost",
    "extract",
    "extract_batch",
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
    from prefect_openai_chat.process import reset_process_state
    from prefect_openai_chat.results import (
        BatchReport,
        ChatResult,
        Extraction,
        RecordOutcome,
        ToolCall,
        Usage,
    )
    from prefect_openai_chat.tasks import (
        achat_completion,
        aextract,
        aextract_batch,
        astream_chat_completion,
        chat_completion,
        extract,
        extract_batch,
        stream_chat_completion,
    )
    from prefect_openai_chat.tokens import count_message_tokens, estimate_cost


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'prefect_openai_chat' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"prefect_openai_chat.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
