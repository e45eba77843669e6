"""One chat completion, Prefect-free: message checks, the runner, stream assembly."""

from prefect_openai_chat.chat.runner import ChatRunner
from prefect_openai_chat.chat.settings import ChatSettings

__all__ = ["ChatRunner", "ChatSettings"]
