"""The outcome check of every answer (the call's own and its summary calls'): an answer cut
at the token limit or stopped by the content filter is an error, unless the settings flag
filtered answers.

Example:
    >>> from prefect_openai_chat.chat.settings import ChatSettings
    >>> from prefect_openai_chat.results import ChatResult
    >>> flagging = ChatSettings(model="gpt-4o-mini", content_filter="flag", safe_message="-")
    >>> check_outcome(ChatResult(finish_reason="content_filter"), flagging).flagged
    True
"""

from __future__ import annotations

from prefect_openai_chat.chat.settings import ChatSettings
from prefect_openai_chat.errors import ContentFilteredError, TruncatedOutputError
from prefect_openai_chat.results import ChatResult


def check_outcome(result: ChatResult, settings: ChatSettings) -> ChatResult:
    """The result, flagged when filtered under `content_filter="flag"`.

    Raises:
        TruncatedOutputError: `finish_reason == "length"`; `.partial` holds the result.
        ContentFilteredError: the content filter stopped it (unless the settings flag it).
    """
    if result.finish_reason == "length":
        raise TruncatedOutputError(
            f"the answer was cut at the token limit after {result.usage.completion_tokens}"
            f" completion tokens (request {result.request_id}); raise max_completion_tokens"
            " or shorten the prompt",
            partial=result,
        )
    if result.finish_reason == "content_filter":
        if settings.content_filter == "flag":
            return result.model_copy(update={"content": settings.safe_message, "flagged": True})
        raise ContentFilteredError(
            f"the provider's content filter stopped the answer (request {result.request_id})",
            partial=result,
        )
    return result
