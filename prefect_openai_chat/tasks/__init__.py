"""Prefect tasks: one call, one stream, one extraction, one batch."""

from prefect_openai_chat.tasks.batch import aextract_batch, extract_batch
from prefect_openai_chat.tasks.chat import (
    achat_completion,
    astream_chat_completion,
    chat_completion,
    stream_chat_completion,
)
from prefect_openai_chat.tasks.extract import aextract, extract

__all__ = [
    "achat_completion",
    "aextract",
    "aextract_batch",
    "astream_chat_completion",
    "chat_completion",
    "extract",
    "extract_batch",
    "stream_chat_completion",
]
