"""Error answers of the simulator, shaped like the real API (or vLLM, or Ollama).

Example:
    >>> from prefect_openai_chat.simulator.errors import SimError, error_body
    >>> error = SimError(404, "no such model", code="model_not_found")
    >>> error_body(error, "openai")["error"]["code"]
    'model_not_found'
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from prefect_openai_chat.simulator.ratelimit import format_duration
from prefect_openai_chat.simulator.responses import BodyResponse, encode_headers, wait_disconnect

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


def rate_limit_error(
    model: str, reason: str, used: int, limit: int, wait: float, requested: int
) -> SimError:
    """The 429 of the simulator's own limits: `reason` is requests, tokens or too-large."""
    if reason == "too-large":
        return SimError(
            429,
            f"Request too large for {model} in organization org-simulator on tokens per min (TPM): "
            f"Limit {limit}, Requested {requested}. The input or output tokens must be reduced in "
            "order to run successfully.",
            type="tokens",
            code="rate_limit_exceeded",
        )
    unit = "requests per min (RPM)" if reason == "requests" else "tokens per min (TPM)"
    asked = 1 if reason == "requests" else requested
    return SimError(
        429,
        f"Rate limit reached for {model} in organization org-simulator on {unit}: Limit {limit}, "
        f"Used {used}, Requested {asked}. Please try again in {format_duration(wait)}. Visit "
        "https://platform.openai.com/account/rate-limits to learn more.",
        type=reason,
        code="rate_limit_exceeded",
        headers=retry_headers(wait),
    )


def retry_headers(seconds: float) -> dict[str, str]:
    """`retry-after` (whole seconds, rounded up) and `retry-after-ms`."""
    ms = max(1, round(seconds * 1000))
    return {"retry-after": str(max(0, -(-ms // 1000))), "retry-after-ms": str(ms)}


# --- shape faults: odd answers of real servers and proxies ----------------------------

OLLAMA_404 = 'model "llama3" not found, try pulling it first'
DETAIL_400 = "Invalid request: temperature must be at most 2"
PLAIN_400 = "Bad Request: the upstream could not parse the request"
AZURE_FILTER_MESSAGE = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management"
    " policy. Please modify your prompt and retry."
)
TRICKLE_INTERVAL_S = 1.0


def azure_filter_body() -> dict[str, Any]:
    """Azure OpenAI's 400 for a prompt its content filter stopped."""
    result = {
        "hate": {"filtered": True, "severity": "high"},
        "jailbreak": {"filtered": False, "detected": False},
        "self_harm": {"filtered": False, "severity": "safe"},
        "sexual": {"filtered": False, "severity": "safe"},
        "violence": {"filtered": True, "severity": "medium"},
    }
    return {
        "error": {
            "message": AZURE_FILTER_MESSAGE,
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": result,
            },
        }
    }


def _completion(model: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-" + os.urandom(12).hex(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5},
    }


def _null_content_stream(model: str) -> bytes:
    base = {"id": "chatcmpl-" + os.urandom(12).hex(), "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}  # fmt: skip
    first = {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": None},
                                  "finish_reason": None}]}  # fmt: skip
    last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    frames = [b"data: " + json.dumps(f).encode() + b"\n\n" for f in (first, last)]
    return b"".join(frames) + b"data: [DONE]\n\n"


def shape_fault_response(
    fault: str,
    headers: dict[str, str],
    model: str,
    stream: bool,
    api_key: str,
    done: Any,
    hang_s: float = 600.0,
) -> tuple[int, Any]:
    """(HTTP status, ASGI answer) for one of the shape faults; a trickle lasts `hang_s`."""
    if fault == "trickle":
        return 200, TrickleResponse(headers, stream, hang_s, on_done=done)
    status, content_type, body = _shape_body(fault, model, stream, api_key)
    return status, BodyResponse(status, headers, body, content_type, on_done=done)


def _shape_body(fault: str, model: str, stream: bool, api_key: str) -> tuple[int, bytes, bytes]:
    json_type = b"application/json"
    if fault == "empty-object":
        return 200, json_type, b"{}"
    if fault == "no-choices":
        return 200, json_type, json.dumps(_completion(model, [])).encode()
    if fault == "invalid-json":
        return 200, json_type, b'{"id": "chatcmpl-1", "choices": [{"index": 0, "message": '
    if fault == "text-plain":
        return 200, b"text/plain; charset=utf-8", b"OK"
    if fault == "null-content":
        if stream:
            return 200, b"text/event-stream; charset=utf-8", _null_content_stream(model)
        message = {"role": "assistant", "content": None, "refusal": None}
        choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
        return 200, json_type, json.dumps(_completion(model, [choice])).encode()
    if fault == "echo-key":
        echoed = (
            f"upstream proxy error while forwarding 'Authorization: Bearer {api_key}'"
            f" (key {api_key} was not accepted upstream)"
        )
        body = {"error": {"message": echoed, "type": "server_error", "param": None, "code": None}}
        return 500, json_type, json.dumps(body).encode()
    if fault == "ollama-404":
        return 404, json_type, json.dumps({"error": OLLAMA_404}).encode()
    if fault == "detail-error":
        return 400, json_type, json.dumps({"detail": DETAIL_400}).encode()
    if fault == "plain-error":
        return 400, b"text/plain; charset=utf-8", PLAIN_400.encode()
    if fault == "azure-filter":
        return 400, json_type, json.dumps(azure_filter_body()).encode()
    raise ValueError(f"not a shape fault: {fault!r}")


class TrickleResponse:
    """Headers at once, then one byte per `TRICKLE_INTERVAL_S` until the client leaves.

    Every byte resets a per-read timeout, so only a deadline on the whole attempt ends it.
    """

    def __init__(
        self, headers: dict[str, str], stream: bool, limit_s: float = 600.0, on_done: Any = None
    ) -> None:
        self.headers, self.stream, self.limit_s, self.on_done = headers, stream, limit_s, on_done

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = b"text/event-stream; charset=utf-8" if self.stream else b"application/json"
        try:
            await send(
                {"type": "http.response.start", "status": 200,
                 "headers": encode_headers(self.headers, kind)}
            )  # fmt: skip
            started = time.monotonic()
            while time.monotonic() - started < self.limit_s:
                # JSON allows leading whitespace; an SSE parser waits for a line's end.
                await send({"type": "http.response.body", "body": b" ", "more_body": True})
                if await wait_disconnect(receive, TRICKLE_INTERVAL_S):
                    return
            await send({"type": "http.response.body", "body": b""})
        except OSError:
            pass
        finally:
            if self.on_done is not None:
                self.on_done()
