"""Properties of the error classifier (`resilience/classify.py`) and the error-body readers
around it (`chat/response.py`): any status, any body - OpenAI's error shape, Azure's (its
content filter included), vLLM's, Ollama's, FastAPI's, HTML pages, empty, not JSON, arrays,
nulls, deep or huge - and any headers always give a verdict from the table; nothing raises.

The exceptions are built by the `openai` SDK's own `_make_status_error_from_response`, as
the client does for a real answer."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import openai
from hypothesis import given
from hypothesis import strategies as st
from prop_support import JSON_VALUES

from prefect_openai_chat.chat.response import content_filter_error, with_server_words
from prefect_openai_chat.errors import ContentFilteredError
from prefect_openai_chat.resilience import RetryPolicy, describe_error, mark_for_task_tier
from prefect_openai_chat.resilience.classify import DEFAULT_VERDICTS, classify, error_row
from prefect_openai_chat.resilience.waits import retry_after_of

CLIENT = openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1", max_retries=0)
REQUEST = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
WORDS = st.text(max_size=60) | st.sampled_from(
    [
        "This model's maximum context length is 8192 tokens",
        "prompt is too long",
        "Rate limit reached for gpt-4o-mini",
        "You exceeded your current quota",
        "model 'llama3' not found, try pulling it first",
        "The response was filtered due to the prompt triggering Azure OpenAI's content policy",
    ]
)
CODES = (
    st.none()
    | JSON_VALUES
    | st.sampled_from(
        [
            "rate_limit_exceeded",
            "insufficient_quota",
            "context_length_exceeded",
            "content_filter",
            "server_error",
            "invalid_api_key",
            "429",
            "400",
        ]
    )
)
FILTER_RESULT = st.dictionaries(
    st.sampled_from(["hate", "sexual", "violence", "self_harm", "jailbreak", "profanity"]),
    JSON_VALUES
    | st.fixed_dictionaries(
        {
            "filtered": st.booleans(),
            "severity": st.sampled_from(["safe", "low", "medium", "high"]),
        },
        optional={"detected": st.booleans()},
    ),
)
JSON_BODIES = st.one_of(
    st.builds(  # OpenAI
        lambda m, t, c, p: {"error": {"message": m, "type": t, "code": c, "param": p}},
        WORDS | JSON_VALUES,
        CODES,
        CODES,
        JSON_VALUES,
    ),
    st.builds(  # Azure content filter
        lambda m, r, c: {
            "error": {
                "message": m,
                "code": c,
                "status": 400,
                "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": r},
            }
        },
        WORDS,
        FILTER_RESULT | JSON_VALUES,
        st.just("content_filter") | CODES,
    ),
    st.builds(  # Azure gateways
        lambda m, s: {"statusCode": s, "message": m}, WORDS, st.integers(100, 599) | JSON_VALUES
    ),
    st.builds(  # vLLM
        lambda m, t, c: {"object": "error", "message": m, "type": t, "param": None, "code": c},
        WORDS | JSON_VALUES,
        CODES,
        st.integers(100, 599) | CODES,
    ),
    st.builds(lambda m: {"error": m}, WORDS | JSON_VALUES),  # Ollama
    st.builds(  # FastAPI
        lambda d: {"detail": d}, WORDS | st.lists(st.fixed_dictionaries({"msg": WORDS}), max_size=3)
    ),
    JSON_VALUES,  # arrays, nulls, numbers, strings
)
BODIES = st.one_of(
    JSON_BODIES.map(lambda body: json.dumps(body).encode()),
    WORDS.map(
        lambda w: f"<html><head><title>{w}</title></head><body><h1>{w}</h1></body></html>".encode()
    ),
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b"upstream connect error or disconnect/reset before headers",
            b"[" * 50_000 + b"]" * 50_000,
            b"[" * 900 + b"]" * 900,  # deep, yet loadable by json
            b'{"error": ' * 3_000 + b"{}" + b"}" * 3_000,
            b'{"error": {"message": "' + b"x" * 3_000_000 + b'"}}',
        ]
    ),
)
STATUSES = st.integers(100, 599) | st.sampled_from([400, 401, 403, 404, 408, 409, 413, 422, 429])
HEADERS = st.dictionaries(
    st.sampled_from(["retry-after", "retry-after-ms", "content-type", "x-request-id"]),
    st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=30),
)


def status_error(status: int, body: bytes, headers: dict[str, str]) -> openai.APIStatusError:
    response = httpx.Response(status, content=body, headers=headers, request=REQUEST)
    return CLIENT._make_status_error_from_response(response)


@given(STATUSES, BODIES, HEADERS)
def test_any_error_answer_gets_a_verdict_and_nothing_raises(
    status: int, body: bytes, headers: dict[str, str]
) -> None:
    exc = status_error(status, body, headers)
    row = error_row(exc)
    verdict = classify(exc)
    assert verdict == DEFAULT_VERDICTS[row] and verdict == RetryPolicy().classify(exc)
    if status == 429:
        assert row in ("rate_limit", "insufficient_quota")
    elif status >= 500:
        assert row == "5xx" and verdict.outage
    elif status in (401, 403, 404, 408, 409):
        assert row == str(status)
    elif status in (400, 413, 422):
        assert row in ("400", "422", "other_4xx", "content_filter", "context_length_exceeded")
    else:
        assert row == "other_4xx"
    with_server_words(exc)
    assert isinstance(exc.message, str) and isinstance(describe_error(exc), str)
    filtered = content_filter_error(exc, "http://x/v1 (model m)")
    assert filtered is None or (
        isinstance(filtered, ContentFilteredError) and row == "content_filter"
    )
    wait = retry_after_of(exc)
    assert wait is None or (math.isfinite(wait) and wait >= 0)
    mark_for_task_tier(exc, RetryPolicy())


@given(CODES, CODES, WORDS)
def test_any_stream_error_event_gets_a_verdict(code: Any, type_: Any, words: str) -> None:
    body = {"message": words, "code": code, "type": type_}
    exc = openai.APIError(words, REQUEST, body=body)  # what the SDK raises for an error event
    row = error_row(exc)
    assert row in ("stream_interrupted", "insufficient_quota", "context_length_exceeded")
    assert classify(exc).action is not None


@given(st.sampled_from([ValueError, KeyError, TypeError, RuntimeError, OSError, TimeoutError]))
def test_any_other_exception_gets_a_verdict(kind: type[Exception]) -> None:
    verdict = classify(kind("x"))
    assert verdict.reason in ("unknown", "timeout")
