"""Prefect 3 tasks, blocks and flows that make OpenAI Chat Completions safe in pipelines.

Example:
    >>> from prefect_openai_chat import count_message_tokens
    >>> count_message_tokens([{"role": "user", "content": "Hello"}], "gpt-4o-mini")
    8
"""

from prefect_openai_chat.blocks import AzureOpenAICredentials, ChatModel, OpenAICredentials
from prefect_openai_chat.results import BatchReport, ChatResult, Extraction, Usage
from prefect_openai_chat.tasks import (
    achat_completion,
    astream_chat_completion,
    chat_completion,
    stream_chat_completion,
)
from prefect_openai_chat.tokens import count_message_tokens, estimate_cost

__version__ = "0.1.0"

__all__ = [
    "AzureOpenAICredentials",
    "BatchReport",
    "ChatModel",
    "ChatResult",
    "Extraction",
    "OpenAICredentials",
    "Usage",
    "achat_completion",
    "astream_chat_completion",
    "chat_completion",
    "count_message_tokens",
    "estimate_cost",
    "stream_chat_completion",
]
