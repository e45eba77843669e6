"""Offline token counting, model facts, prices and context fitting. No Prefect here."""

from prefect_openai_chat.tokens.context import context_limit, fit_messages, split_for_summary
from prefect_openai_chat.tokens.counting import (
    count_message_tokens,
    count_request_tokens,
    count_text_tokens,
)
from prefect_openai_chat.tokens.encodings import get_encoding
from prefect_openai_chat.tokens.models import ModelInfo, is_pinned_snapshot, model_info
from prefect_openai_chat.tokens.prices import PRICES, Price, estimate_cost, price_for

__all__ = [
    "PRICES",
    "ModelInfo",
    "Price",
    "context_limit",
    "count_message_tokens",
    "count_request_tokens",
    "count_text_tokens",
    "estimate_cost",
    "fit_messages",
    "get_encoding",
    "is_pinned_snapshot",
    "model_info",
    "price_for",
    "split_for_summary",
]
