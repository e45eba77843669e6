"""The error table: every row, by class and code, through the real openai exception types."""

from __future__ import annotations

import pytest
from resilience_helpers import api_error, connection_error, status_error, timeout_error

from prefect_openai_chat.errors import (
    AttemptTimeoutError,
    CallTimeoutError,
    CircuitOpenError,
    ContentFilteredError,
    ContextWindowExceededError,
    CredentialsRejectedError,
    IncompleteStreamError,
    InsufficientQuotaError,
    MalformedResponseError,
    MissingFallbackError,
)
from prefect_openai_chat.resilience import Action, Verdict, build_verdicts, classify, error_row

R, F, C, K = Action.RETRY, Action.FAIL, Action.CONTEXT, Action.RELOAD_CREDENTIALS

# error, expected (row, action, task_retry, outage, rate_limited)
TABLE = [
    (connection_error(), ("connection", R, True, True, False)),
    (timeout_error(), ("timeout", R, True, True, False)),
    (TimeoutError("stalled"), ("timeout", R, True, True, False)),
    (
        status_error(429, api_error("rate_limit_exceeded", type_="requests")),
        ("rate_limit", R, True, False, True),
    ),
    (
        status_error(429, api_error("insufficient_quota", type_="insufficient_quota")),
        ("insufficient_quota", F, False, False, False),
    ),
    (
        status_error(429, api_error(None, type_="insufficient_quota")),
        ("insufficient_quota", F, False, False, False),
    ),
    (status_error(408, api_error(None)), ("408", R, True, True, False)),
    (status_error(409, api_error(None)), ("409", R, True, True, False)),
    (status_error(500, api_error(None)), ("5xx", R, True, True, False)),
    (status_error(502, None), ("5xx", R, True, True, False)),
    (status_error(503, api_error(None)), ("5xx", R, True, True, False)),
    (status_error(504, api_error(None)), ("5xx", R, True, True, False)),
    (status_error(529, api_error(None)), ("5xx", R, True, True, False)),
    (IncompleteStreamError("no [DONE]"), ("stream_interrupted", R, True, True, False)),
    (
        status_error(400, api_error("context_length_exceeded", "This model's maximum...")),
        ("context_length_exceeded", C, False, False, False),
    ),
    (
        status_error(400, api_error("invalid_value", "bad temperature")),
        ("400", F, False, False, False),
    ),
    (status_error(401, api_error("invalid_api_key")), ("401", K, False, False, False)),
    (
        status_error(403, api_error("unsupported_country_region_territory")),
        ("403", F, False, False, False),
    ),
    (status_error(404, api_error("model_not_found")), ("404", F, False, False, False)),
    (status_error(422, api_error(None)), ("422", F, False, False, False)),
    (status_error(418, api_error(None)), ("other_4xx", F, False, False, False)),
    (CircuitOpenError("k", 1.0, "503"), ("circuit_open", F, False, False, False)),
    (InsufficientQuotaError("out"), ("insufficient_quota", F, False, False, False)),
    (CredentialsRejectedError("no"), ("unknown", F, False, False, False)),
    (ContextWindowExceededError("too long"), ("unknown", F, False, False, False)),
    (ValueError("a bug"), ("unknown", F, False, False, False)),
    (MalformedResponseError("{}"), ("malformed_response", R, True, True, False)),
    (AttemptTimeoutError("trickle"), ("timeout", R, True, True, False)),
    (CallTimeoutError("600 s"), ("call_timeout", F, False, False, False)),
    (ContentFilteredError("hate"), ("content_filter", F, False, False, False)),
    (
        status_error(400, api_error("content_filter", "filtered by Azure")),
        ("content_filter", F, False, False, False),
    ),
    (MissingFallbackError("not saved"), ("unknown", F, False, False, False)),
]


@pytest.mark.parametrize(("exc", "expected"), TABLE, ids=[type(e).__name__ for e, _ in TABLE])
def test_every_row_of_the_default_table(exc: BaseException, expected: tuple[object, ...]) -> None:
    row, action, task_retry, outage, rate_limited = expected
    verdict = classify(exc)
    assert (
        error_row(exc),
        verdict.action,
        verdict.task_retry,
        verdict.outage,
        verdict.rate_limited,
    ) == (row, action, task_retry, outage, rate_limited)
    assert verdict.reason == row


def test_context_overflow_from_message_only_when_server_sends_no_code() -> None:
    # vLLM: the body is the error itself, `code` is the HTTP status number.
    vllm = status_error(
        400,
        {
            "object": "error",
            "type": "BadRequestError",
            "code": 400,
            "message": "This model's maximum context length is 4096 tokens.",
        },
    )
    # Ollama (native shape): {"error": "..."} -> no code, no type.
    ollama = status_error(400, {"error": "input exceeds the context length of the model"})
    # OpenAI with a real, different code: the message text must not decide.
    openai_other = status_error(400, api_error("invalid_value", "context length of 5 is fine"))
    assert classify(vllm).action is Action.CONTEXT
    assert classify(ollama).action is Action.CONTEXT
    assert classify(openai_other).action is Action.FAIL
    assert classify(status_error(400, {"error": "bad json"})).action is Action.FAIL


def test_rows_can_be_overridden_by_action_or_verdict() -> None:
    conflict = status_error(409, api_error(None))
    assert classify(conflict, {"409": "fail"}).action is Action.FAIL
    assert classify(conflict, {"409": Action.FAIL}).task_retry is False
    custom = Verdict(Action.RETRY, task_retry=False, outage=False)
    assert classify(status_error(404, api_error(None)), {"404": custom}) == Verdict(
        Action.RETRY, task_retry=False, outage=False, reason="404"
    )


def test_bad_overrides_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"unknown error-table row '499'.*known rows"):
        build_verdicts({"499": "retry"})
    with pytest.raises(ValueError, match=r"override for row '409' must be.*retry, fail"):
        build_verdicts({"409": "sometimes"})


def test_mid_stream_error_events_from_the_sdk() -> None:
    import httpx2
    import openai

    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    event = openai.APIError(
        "An error occurred during streaming",
        request,
        body={"message": "overloaded", "type": "server_error", "code": None},
    )
    assert error_row(event) == "stream_interrupted" and classify(event).outage
    quota = openai.APIError("x", request, body={"code": "insufficient_quota", "type": None})
    assert error_row(quota) == "insufficient_quota"
    validation = openai.APIResponseValidationError(httpx2.Response(200, request=request), body=None)
    assert error_row(validation) == "unknown"
