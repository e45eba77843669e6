"""Prefect tasks: one call, one stream, one extraction, one batch."""

from prefect_openai_chat.tasks.chat import (
    achat_completion,
    astream_chat_completion,
    chat_completion,
    stream_chat_completion,
)

__all__ = [
    "achat_completion",
    "astream_chat_completion",
    "chat_completion",
    "stream_chat_completion",
]
