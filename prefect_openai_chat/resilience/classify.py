"""What to do about an error: one table from (exception class, status, code) to a verdict.

`error_row` names the row an exception falls in (by class, HTTP status and the
API's `code`/`type`, never by message text, except for OpenAI-compatible servers
that send no code, where a context overflow is recognised from the message);
`DEFAULT_VERDICTS` says what each row means for the two retry tiers and the circuit.
Any row can be overridden with `classify(exc, overrides={"409": Action.FAIL})`.

Example:
    >>> from prefect_openai_chat.errors import CircuitOpenError
    >>> from prefect_openai_chat.resilience.classify import classify
    >>> v = classify(CircuitOpenError("k", 0.0))
    >>> (v.action.value, v.task_retry, v.outage)
    ('fail', False, False)
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum

import openai

from prefect_openai_chat.errors import (
    CallTimeoutError,
    CircuitOpenError,
    ContentFilteredError,
    ContextWindowExceededError,
    CredentialsRejectedError,
    IncompleteStreamError,
    InsufficientQuotaError,
    MalformedResponseError,
    MissingFallbackError,
    ProxyRefusedError,
    RateLimitPatienceError,
    StaticFallbackError,
    tls_failure,
)


class Action(str, Enum):
    """What the in-call tier does with an error."""

    RETRY = "retry"  # try again within the call, after the policy's wait
    FAIL = "fail"  # raise now
    CONTEXT = "context"  # apply the context strategy (truncate, summarize, bigger model)
    RELOAD_CREDENTIALS = "reload_credentials"  # reload the key once, retry once if it changed


@dataclass(frozen=True)
class Verdict:
    """The decision for one error.

    Attributes:
        action: What the in-call tier does.
        task_retry: Whether the Prefect task tier may re-run the task for it.
        outage: Whether it counts as an outage failure for the circuit breaker.
        rate_limited: Whether the server asked us to slow down (throttle the limiter).
        reason: The table row it came from, e.g. `"5xx"` or `"insufficient_quota"`.
    """

    action: Action
    task_retry: bool = False
    outage: bool = False
    rate_limited: bool = False
    reason: str = ""


def _v(action: Action, task: bool, outage: bool, rate: bool = False) -> Verdict:
    return Verdict(action, task_retry=task, outage=outage, rate_limited=rate)


_R, _F = Action.RETRY, Action.FAIL

# row                        in-call tier                   task   outage  rate-limited
DEFAULT_VERDICTS: dict[str, Verdict] = {
    "connection": _v(_R, True, True),  # APIConnectionError: refused, reset, DNS
    "timeout": _v(_R, True, True),  # APITimeoutError, TimeoutError (stalled)
    "tls": _v(_F, False, False),  # certificate not trusted or refused: a setting fixes it
    "proxy_refused": _v(_F, False, False),  # the proxy answered 407 or 403 to CONNECT
    "rate_limit": _v(_R, True, False, rate=True),  # 429 rate_limit_exceeded
    "insufficient_quota": _v(_F, False, False),  # 429 insufficient_quota: never
    "rate_limit_patience": _v(_F, False, False),  # 429s outlasted the patience
    "408": _v(_R, True, True),
    "409": _v(_R, True, True),
    "5xx": _v(_R, True, True),  # 500, 502, 503, 504, other 5xx
    "stream_interrupted": _v(_R, True, True),  # error event mid-stream, cut stream
    "malformed_response": _v(_R, True, True),  # 200 but not a completion: {}, no choices, text
    "content_filter": _v(_F, False, False),  # the provider filtered the prompt (Azure 400)
    "call_timeout": _v(_F, False, False),  # the whole call outlasted call_timeout_s
    "context_length_exceeded": _v(Action.CONTEXT, False, False),
    "400": _v(_F, False, False),
    "401": _v(Action.RELOAD_CREDENTIALS, False, False),
    "403": _v(_F, False, False),
    "404": _v(_F, False, False),
    "422": _v(_F, False, False),
    "other_4xx": _v(_F, False, False),
    "circuit_open": _v(_F, False, False),  # waited out in-call within the outage patience
    "unknown": _v(_F, False, False),  # bugs and anything not listed: fail loudly
}
DEFAULT_VERDICTS = {row: replace(v, reason=row) for row, v in DEFAULT_VERDICTS.items()}

ROWS: frozenset[str] = frozenset(DEFAULT_VERDICTS)
TOO_MANY_REQUESTS: frozenset[str] = frozenset({"rate_limit", "insufficient_quota"})
"""The rows of an HTTP 429 answer (slow down, or out of quota): what `http_429s` counts."""

# Message fragments of context overflows from servers that send no code (vLLM, Ollama).
_CONTEXT_TEXT = re.compile(
    r"maximum context length|context length|context window|context_length_exceeded"
    r"|too many tokens|prompt is too long|exceeds the model'?s",
    re.IGNORECASE,
)
_QUOTA = "insufficient_quota"


def _real_code(exc: openai.APIError) -> str | None:
    """The API's error code, or None when the server sent none (or only the status number)."""
    code = exc.code
    if code is None or str(code).strip().isdigit():
        return None
    return str(code)


def _is_context_overflow(exc: openai.APIStatusError) -> bool:
    code = _real_code(exc)
    if code is not None:
        return code == "context_length_exceeded"
    if exc.type == "context_length_exceeded":
        return True
    return bool(_CONTEXT_TEXT.search(exc.message or ""))


def error_row(exc: BaseException) -> str:
    """Name the row of the error table that `exc` falls in.

    Example:
        >>> error_row(TimeoutError())
        'timeout'
    """
    # Errors the plugin raised itself (some wrap an openai error as their cause).
    if isinstance(exc, CircuitOpenError | StaticFallbackError):
        return "circuit_open"  # the endpoint is down; the in-call tier waited what it could
    if isinstance(exc, InsufficientQuotaError):
        return "insufficient_quota"
    if isinstance(exc, RateLimitPatienceError):
        return "rate_limit_patience"
    if isinstance(exc, CredentialsRejectedError | ContextWindowExceededError):
        return "unknown"  # already decided: fail, no retry
    if isinstance(exc, MissingFallbackError):
        return "unknown"  # a configuration error: fail, no retry
    if isinstance(exc, MalformedResponseError):
        return "malformed_response"
    if isinstance(exc, ContentFilteredError):
        return "content_filter"
    if isinstance(exc, CallTimeoutError):
        return "call_timeout"
    if isinstance(exc, IncompleteStreamError):
        return "stream_interrupted"
    # openai errors.
    if isinstance(exc, ProxyRefusedError):
        return "proxy_refused"
    if isinstance(exc, openai.APIConnectionError | ssl.SSLError) and tls_failure(exc):
        return "tls"  # TLSConfigurationError, or an untrusted certificate behind a bare client
    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.APIStatusError):
        return _status_row(exc)
    if type(exc) is openai.APIError:  # the SDK's error for a `data: {"error": ...}` stream event
        return _stream_error_row(exc.code, exc.type)
    return "unknown"


def _stream_error_row(code: str | None, type_: str | None) -> str:
    """A mid-stream error event: an interrupted stream, unless its code says otherwise."""
    if _QUOTA in (code, type_):
        return "insufficient_quota"
    if "context_length_exceeded" in (code, type_):
        return "context_length_exceeded"
    return "stream_interrupted"


def _status_row(exc: openai.APIStatusError) -> str:
    status = exc.status_code
    if status == 429:
        return "insufficient_quota" if _QUOTA in (exc.code, exc.type) else "rate_limit"
    if status in (400, 413, 422) and _is_context_overflow(exc):
        return "context_length_exceeded"
    if status == 400 and _real_code(exc) == "content_filter":
        return "content_filter"  # Azure's prompt filter
    if status in (400, 401, 403, 404, 408, 409, 422):
        return str(status)
    if status >= 500:
        return "5xx"
    return "other_4xx"


Override = Verdict | Action | str


def _as_verdict(row: str, override: Override) -> Verdict:
    if isinstance(override, Verdict):
        return replace(override, reason=override.reason or row)
    try:
        action = Action(override)
    except ValueError:
        choices = ", ".join(a.value for a in Action)
        raise ValueError(
            f"override for row {row!r} must be a Verdict or one of: {choices}; got {override!r}"
        ) from None
    base = DEFAULT_VERDICTS[row]
    return replace(base, action=action, task_retry=action is Action.RETRY)


def build_verdicts(overrides: Mapping[str, Override] | None = None) -> dict[str, Verdict]:
    """The default table with `overrides` applied; unknown row names are an error.

    Example:
        >>> build_verdicts({"409": "fail"})["409"].action
        <Action.FAIL: 'fail'>
    """
    table = dict(DEFAULT_VERDICTS)
    for row, override in (overrides or {}).items():
        if row not in table:
            raise ValueError(
                f"unknown error-table row {row!r}; known rows: {', '.join(sorted(ROWS))}"
            )
        table[row] = _as_verdict(row, override)
    return table


def classify(exc: BaseException, overrides: Mapping[str, Override] | None = None) -> Verdict:
    """Return the verdict for `exc` from the default table, with optional row overrides.

    Example:
        >>> classify(ValueError("bug")).action
        <Action.FAIL: 'fail'>
    """
    row = error_row(exc)
    if overrides and row in overrides:
        return _as_verdict(row, overrides[row])
    return DEFAULT_VERDICTS[row]
