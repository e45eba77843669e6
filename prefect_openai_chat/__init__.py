"""Prefect 3 tasks, blocks and flows that make OpenAI Chat Completions safe in pipelines."""

from prefect_openai_chat.results import BatchReport, ChatResult, Extraction, Usage
from prefect_openai_chat.tokens import count_message_tokens, estimate_cost

__version__ = "0.1.0"

__all__ = [
    "BatchReport",
    "ChatResult",
    "Extraction",
    "Usage",
    "count_message_tokens",
    "estimate_cost",
]
