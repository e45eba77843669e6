"""The exceptions a call can raise to its caller, and their base class `ChatError`.

Catch `ChatError` for anything the plugin decided; the `openai` exceptions that the
policy lets through unchanged keep their own classes. Errors that belong to one
module live there: the prompt template errors (`extraction/templates.py`, both
`ChatError`s), `NotStrictError` (`extraction/schema.py`, caught inside it),
`VocabularyError` (`tokens/encodings.py`, a broken installation) and `DemoError`
(`demo.py`, the demo command). Each class says what happened in one line; none
ever carries a secret.

Example:
    >>> from prefect_openai_chat.errors import ChatError, CircuitOpenError
    >>> issubclass(CircuitOpenError, ChatError)
    True
"""

from __future__ import annotations

import ssl
import time
from datetime import datetime, timezone
from typing import Any

import openai


class ChatError(Exception):
    """Base class of every error the plugin raises itself."""


def add_note(exc: BaseException, text: str) -> None:
    """Attach a note to `exc` (shown under its traceback; on Python 3.10 kept in `__notes__`)."""
    note = f"prefect-openai-chat: {text}"
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:  # Python 3.10
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]


def add_to_message(exc: BaseException, text: str) -> None:
    """Append `; text` to `exc`'s own message: what `str(exc)`, a traceback's last line and
    a Prefect task's state message show (a note shows only under the traceback).

    Example:
        >>> error = ConnectionError("refused")
        >>> add_to_message(error, "fallback 'azure' failed too: TimeoutError()")
        >>> str(error)
        "refused; fallback 'azure' failed too: TimeoutError()"
    """
    head = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    amended = f"{head}; {text}" if head else text
    try:
        exc.args = (amended, *exc.args[1:])
    except (AttributeError, TypeError):  # an exception type whose args cannot be set
        add_note(exc, text)
        return
    if isinstance(getattr(exc, "message", None), str):  # the openai errors keep it here too
        exc.message = amended  # type: ignore[attr-defined]


# --- bad input: raised before any HTTP call -----------------------------------------


class InvalidInputError(ChatError, ValueError):
    """The caller passed something the API would reject; nothing was sent."""


class LedgerError(ChatError):
    """The record ledger (`cache=`) cannot be opened or used: a bad URL, a missing driver,
    or a database that does not answer. The message names it (password masked)."""


# --- outcomes of a call that reached the server --------------------------------------


class TruncatedOutputError(ChatError):
    """The model stopped at the token limit (`finish_reason == "length"`)."""

    def __init__(self, message: str, partial: Any = None) -> None:
        super().__init__(message)
        self.partial = partial


class ContentFilteredError(ChatError):
    """The provider's content filter stopped the prompt or the answer; never retried.

    Attributes:
        partial: The result, when the answer was filtered (`finish_reason == "content_filter"`).
        categories: Filter category to its verdict, e.g. `{"hate": {"filtered": True,
            "severity": "high"}}`, when the provider named them (Azure's prompt filter).
    """

    def __init__(
        self, message: str, partial: Any = None, categories: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.partial = partial
        self.categories = categories or {}


class MalformedResponseError(ChatError):
    """A 200 answer that is not a chat completion (empty, no choices, not JSON, not JSON at all).

    Retried like an outage: proxies and overloaded gateways send these, a real model does not.
    """


class AttemptTimeoutError(ChatError, TimeoutError):
    """One HTTP attempt outlasted `timeouts.attempt_s` (e.g. a server trickling bytes); retried."""


class CallTimeoutError(ChatError):
    """The whole logical call outlasted `timeouts.call_s`, retries included; not retried."""


class IncompleteStreamError(ChatError):
    """A stream ended without a finish reason or `[DONE]`; its text is not an answer."""


# --- the policy gave up or refused -----------------------------------------------------


class InsufficientQuotaError(ChatError):
    """The account is out of quota (429 `insufficient_quota`); retrying cannot help."""


class CredentialsRejectedError(ChatError):
    """The API key was rejected (401), also after reloading the credentials once."""


class ContextWindowExceededError(ChatError, ValueError):
    """The prompt plus the completion room does not fit the model's context window.

    `for_prompt` builds it with the one wording (and the one hint) every case uses; the
    context fitter (`tokens/context.py`) is the one place that raises it.

    Example:
        >>> error = ContextWindowExceededError.for_prompt("gpt-4", 9000, 500, 8192)
        >>> print(str(error).replace("answer (", "answer\\n("))
        the prompt needs 9000 tokens plus 500 for the answer
        (9500 in all), over the 8192-token context window of 'gpt-4'; shorten the input ...
    """

    HINT = (
        "shorten the input or lower max_completion_tokens, or set another context_strategy on"
        " the ChatModel (truncate_oldest, summarize, or bigger_model with a fallback whose"
        " window fits) or its real context_window"
    )

    def __init__(self, message: str, prompt_tokens: int = 0, limit: int = 0) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.limit = limit

    @classmethod
    def for_prompt(
        cls,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        limit: int | None,
        *,
        fact: str = "",
        counted_by: str = "",
    ) -> ContextWindowExceededError:
        """The error for a prompt of `prompt_tokens` with `completion_tokens` of room.

        Args:
            model: The model whose window it is.
            prompt_tokens: Tokens of the prompt (messages and tools).
            completion_tokens: Room reserved for the answer.
            limit: The window in tokens; None when not known (the server did not say).
            fact: What else was found, e.g. "it fits no fallback model either".
            counted_by: Who found it too long when it is not the local count,
                e.g. "the server".
        """
        window = f"the {limit}-token context window" if limit else "the context window"
        who = f" ({counted_by} says so)" if counted_by else ""
        found = f"; {fact}" if fact else ""
        return cls(
            f"the prompt needs {prompt_tokens} tokens plus {completion_tokens} for the answer"
            f" ({prompt_tokens + completion_tokens} in all), over {window} of {model!r}{who}"
            f"{found}; {cls.HINT}",
            prompt_tokens=prompt_tokens,
            limit=limit or 0,
        )


class RateLimitPatienceError(ChatError):
    """429 `rate_limit_exceeded` answers outlasted the rate-limit patience of one call."""

    def __init__(self, message: str, waited_s: float = 0.0, answers: int = 0) -> None:
        super().__init__(message)
        self.waited_s = waited_s
        self.answers = answers


class TLSConfigurationError(openai.APIConnectionError, ChatError):
    """The TLS handshake failed in a way only a setting fixes: the server's (or the proxy's)
    certificate is not trusted, or the server refused the client certificate. Never retried;
    the message names the host and the credentials block's setting to change
    (docs/concepts/proxies-and-tls.md)."""

    def __init__(self, message: str, request: Any) -> None:
        super().__init__(message=message, request=request)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.request))


class ProxyRefusedError(openai.APIConnectionError, ChatError):
    """The proxy refused to open the tunnel: 407 (its credentials are wrong or missing) or
    403 (it does not allow that host). Never retried; the message names the proxy and the
    settings to check (docs/concepts/proxies-and-tls.md)."""

    def __init__(self, message: str, request: Any) -> None:
        super().__init__(message=message, request=request)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.request))


# OpenSSL reasons of TLS failures that retrying cannot fix: the server refused the client
# certificate (or its absence), or it does not speak TLS on that port.
TLS_CONFIGURATION_REASONS = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV1_ALERT_ACCESS_DENIED",
        "WRONG_VERSION_NUMBER",
    }
)


def tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error in `exc`'s cause chain that only a configuration change fixes, or None.

    Example:
        >>> tls_failure(ConnectionResetError()) is None
        True
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        if isinstance(current, ssl.SSLError) and current.reason in TLS_CONFIGURATION_REASONS:
            return current
        current = current.__cause__ or current.__context__
    return None


class StaticFallbackError(ChatError):
    """Only the static fallback answered: the endpoint is down and there is nothing to extract."""


class MissingFallbackError(ChatError, ValueError):
    """A fallback model named in `fallback_models` is not a saved `ChatModel` block."""


class CircuitOpenError(ChatError):
    """The circuit for this endpoint and model is open; the call was not sent.

    Attributes:
        key: The circuit key (base URL and model).
        retry_at: When the next probe may go, in unix seconds.
        last_error: The outage error that opened it.
    """

    def __init__(
        self, key: str, retry_at: float, last_error: str | None = None, now: float | None = None
    ) -> None:
        self.key = key
        self.retry_at = retry_at
        self.last_error = last_error
        super().__init__(
            f"circuit {key!r} is open after repeated outage errors"
            f" (last: {last_error or 'unknown'}); next probe {probe_time(retry_at, now)}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # The state keeps what was added after it was raised: its message, notes and marks.
        state = {"args": self.args, **self.__dict__}
        return (type(self), (self.key, self.retry_at, self.last_error), state)


def probe_time(at: float, now: float | None = None) -> str:
    """`in 12.3 s (at 2026-01-02T03:04:05Z)`: seconds from now and the UTC wall-clock time.

    Example:
        >>> probe_time(1_700_000_030.0, now=1_700_000_000.0)
        'in 30.0 s (at 2023-11-14T22:13:50Z)'
    """
    wait = max(0.0, at - (time.time() if now is None else now))
    wall = datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"in {wait:.1f} s (at {wall})"
