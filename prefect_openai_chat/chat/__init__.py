"""One chat completion, Prefect-free: the runner and its pieces (request, sender, fallbacks,
record, outcome check), message checks, stream assembly, clients."""

from prefect_openai_chat.chat.runner import ChatRunner
from prefect_openai_chat.chat.settings import ChatSettings

__all__ = ["ChatRunner", "ChatSettings"]
