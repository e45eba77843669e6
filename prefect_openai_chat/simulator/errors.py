"""Error answers of the simulator, shaped like the real API (or vLLM, or Ollama).

Example:
    >>> from prefect_openai_chat.simulator.errors import SimError, error_body
    >>> error = SimError(404, "no such model", code="model_not_found")
    >>> error_body(error, "openai")["error"]["code"]
    'model_not_found'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


@dataclass
class SimError(Exception):
    """An error answer: HTTP status plus the API's `message`, `type`, `param`, `code`."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    fault: str | None = None  # the stats bucket, when this error is an injected fault

    def __str__(self) -> str:
        return f"{self.status} {self.message}"


def error_body(error: SimError, error_format: str) -> dict[str, Any]:
    """The JSON body of `error` in the server flavour `error_format`."""
    if error_format == "vllm":
        return {
            "object": "error",
            "message": error.message,
            "type": _vllm_type(error.status),
            "param": None,
            "code": error.status,
        }
    if error_format == "ollama":
        return {
            "error": {"message": error.message, "type": error.type, "param": None, "code": None}
        }
    return {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }


def _vllm_type(status: int) -> str:
    return {
        400: "BadRequestError",
        401: "Unauthorized",
        404: "NotFoundError",
        429: "TooManyRequests",
    }.get(status, "InternalServerError" if status >= 500 else "BadRequestError")


def type_name(value: Any) -> str:
    """`an integer`, `a string`, ... as the API names a JSON value's type."""
    return _TYPE_NAMES.get(type(value), "an object")


def invalid_type(param: str, expected: str, value: Any) -> SimError:
    """400 for a parameter of the wrong JSON type."""
    return SimError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def missing(param: str) -> SimError:
    """400 for a missing required parameter."""
    return SimError(
        400,
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def invalid_value(param: str, message: str) -> SimError:
    """400 for a parameter with a value out of its domain."""
    return SimError(400, message, param=param, code="invalid_value")


# --- injected HTTP faults -------------------------------------------------------------

HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

SERVER_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"


def fault_error(fault: str, model: str, retry_after_s: float) -> SimError:
    """The error answer of an injected HTTP fault (all but `reset`, `hang`, `502-html`)."""
    if fault == "429":
        ms = max(1, round(retry_after_s * 1000))
        return SimError(
            429,
            f"Rate limit reached for {model} in organization org-simulator on requests per min "
            f"(RPM): Limit 500, Used 500, Requested 1. Please try again in {ms}ms. Visit "
            "https://platform.openai.com/account/rate-limits to learn more.",
            type="requests",
            code="rate_limit_exceeded",
            headers=retry_headers(retry_after_s),
            fault=fault,
        )
    if fault == "quota":
        return SimError(
            429,
            "You exceeded your current quota, please check your plan and billing details. For "
            "more information on this error, read the docs: "
            "https://platform.openai.com/docs/guides/error-codes/api-errors.",
            type="insufficient_quota",
            code="insufficient_quota",
            fault=fault,
        )
    if fault == "502":
        return SimError(502, "Bad gateway.", type="cf_bad_gateway", code=502, fault=fault)
    if fault == "503":
        return SimError(
            503,
            "The server is overloaded or not ready yet.",
            type="server_error",
            code="service_unavailable",
            fault=fault,
        )
    if fault == "408":
        return SimError(
            408, "Request timed out.", type="timeout", code="request_timeout", fault=fault
        )
    if fault == "409":
        return SimError(
            409,
            "Conflict: another request with the same state is being processed. Please retry.",
            type="invalid_request_error",
            code="conflict",
            fault=fault,
        )
    return SimError(500, SERVER_ERROR_MESSAGE, type="server_error", code=None, fault=fault)


def retry_headers(seconds: float) -> dict[str, str]:
    """`retry-after` (whole seconds, rounded up) and `retry-after-ms`."""
    ms = max(1, round(seconds * 1000))
    return {"retry-after": str(max(0, -(-ms // 1000))), "retry-after-ms": str(ms)}
