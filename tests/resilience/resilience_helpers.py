"""Helpers for the resilience tests: real openai exceptions, recording sleeps, fake clocks."""

from __future__ import annotations

from typing import Any

import httpx2
import openai
from timing_support import FakeClock, RecordingSleep

__all__ = ["FakeClock", "RecordingSleep", "api_error", "connection_error", "status_error"]

_CLIENT = openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1", max_retries=0)


def status_error(
    status: int, body: Any = None, headers: dict[str, str] | None = None
) -> openai.APIStatusError:
    """The exception the real openai client raises for this HTTP answer."""
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    response = httpx2.Response(status, headers=headers or {}, json=body, request=request)
    return _CLIENT._make_status_error(
        f"Error code: {status} - {body}", body=body, response=response
    )


def api_error(code: str | None, message: str = "boom", type_: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def connection_error() -> openai.APIConnectionError:
    return openai.APIConnectionError(request=httpx2.Request("POST", "http://127.0.0.1:9/v1"))


def timeout_error() -> openai.APITimeoutError:
    return openai.APITimeoutError(request=httpx2.Request("POST", "http://127.0.0.1:9/v1"))
