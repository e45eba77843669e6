"""Prefect blocks: credentials and chat model settings saved in the Prefect UI."""

from prefect_openai_chat.blocks.chat_model import ChatModel
from prefect_openai_chat.blocks.credentials import AzureOpenAICredentials, OpenAICredentials
from prefect_openai_chat.blocks.sections import Circuit, Limits, Retries, Timeouts

__all__ = [
    "AzureOpenAICredentials",
    "ChatModel",
    "Circuit",
    "Limits",
    "OpenAICredentials",
    "Retries",
    "Timeouts",
]
