"""Every exception the plugin raises, in one place.

Catch `ChatError` for anything the plugin decided; the `openai` exceptions that the
policy lets through unchanged keep their own classes. Each class says what
happened in one line; none of them ever carries a secret.

Example:
    >>> from prefect_openai_chat.errors import ChatError, CircuitOpenError
    >>> issubclass(CircuitOpenError, ChatError)
    True
"""

from __future__ import annotations

from typing import Any


class ChatError(Exception):
    """Base class of every error the plugin raises itself."""


def add_note(exc: BaseException, text: str) -> None:
    """Attach a note to `exc` (shown under its traceback; on Python 3.10 kept in `__notes__`)."""
    note = f"prefect-openai-chat: {text}"
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:  # Python 3.10
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]


# --- bad input: raised before any HTTP call -----------------------------------------


class InvalidInputError(ChatError, ValueError):
    """The caller passed something the API would reject; nothing was sent."""


# --- outcomes of a call that reached the server --------------------------------------


class TruncatedOutputError(ChatError):
    """The model stopped at the token limit (`finish_reason == "length"`)."""

    def __init__(self, message: str, partial: Any = None) -> None:
        super().__init__(message)
        self.partial = partial


class ContentFilteredError(ChatError):
    """The provider's content filter stopped the answer (`finish_reason == "content_filter"`)."""

    def __init__(self, message: str, partial: Any = None) -> None:
        super().__init__(message)
        self.partial = partial


class IncompleteStreamError(ChatError):
    """A stream ended without a finish reason or `[DONE]`; its text is not an answer."""


class StreamErrorEvent(ChatError):
    """The server sent an error event in the middle of a stream."""

    def __init__(self, message: str, code: str | None = None, type: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.type = type


# --- the policy gave up or refused -----------------------------------------------------


class InsufficientQuotaError(ChatError):
    """The account is out of quota (429 `insufficient_quota`); retrying cannot help."""


class CredentialsRejectedError(ChatError):
    """The API key was rejected (401), also after reloading the credentials once."""


class ContextWindowExceededError(ChatError, ValueError):
    """The prompt plus the completion room does not fit the model's context window."""

    def __init__(self, message: str, prompt_tokens: int = 0, limit: int = 0) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.limit = limit


class RateLimitPatienceError(ChatError):
    """429 `rate_limit_exceeded` answers outlasted the rate-limit patience of one call."""

    def __init__(self, message: str, waited_s: float = 0.0, answers: int = 0) -> None:
        super().__init__(message)
        self.waited_s = waited_s
        self.answers = answers


class StaticFallbackError(ChatError):
    """Only the static fallback answered: the endpoint is down and there is nothing to extract."""


class CircuitOpenError(ChatError):
    """The circuit for this endpoint and model is open; the call was not sent."""

    def __init__(self, key: str, retry_at: float, last_error: str | None = None) -> None:
        self.key = key
        self.retry_at = retry_at
        self.last_error = last_error
        super().__init__(
            f"circuit {key!r} is open after repeated outage errors"
            f" (last: {last_error or 'unknown'}); next probe at unix time {retry_at:.1f}"
        )
