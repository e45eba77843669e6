"""RetryPolicy settings, the total-attempts bound and the generated task retry condition."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pydantic
import pytest
from resilience_helpers import api_error, connection_error, status_error

from prefect_openai_chat.errors import CircuitOpenError
from prefect_openai_chat.resilience import RetryPolicy, make_retry_condition


class FakeState:
    """Duck-typed Prefect state: `.result(raise_on_failure=False)` returns the exception."""

    def __init__(self, outcome: Any, awaitable: bool = False) -> None:
        self._outcome = outcome
        self._awaitable = awaitable

    def result(self, raise_on_failure: bool = True) -> Any:
        assert raise_on_failure is False
        if self._awaitable:

            async def later() -> Any:
                return self._outcome

            return later()
        return self._outcome


def test_defaults_and_bound() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.task_retries) == (4, 2)
    assert policy.max_total_attempts == 12
    assert RetryPolicy(max_attempts=1, task_retries=0).max_total_attempts == 1


def test_invalid_settings_are_clear() -> None:
    with pytest.raises(pydantic.ValidationError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(pydantic.ValidationError, match="unknown error-table row 'teapot'"):
        RetryPolicy(overrides={"teapot": "retry"})


def test_policy_overrides_apply() -> None:
    policy = RetryPolicy(overrides={"409": "fail"})
    assert policy.classify(status_error(409, api_error(None))).task_retry is False
    assert policy.classify(status_error(503, api_error(None))).task_retry is True


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (CircuitOpenError("k", 0.0, "503"), False),  # waited out in-call, within the patience
        (status_error(503, api_error(None)), True),
        (connection_error(), True),
        (status_error(429, api_error("insufficient_quota")), False),
        (status_error(400, api_error("invalid_value")), False),
        (status_error(401, api_error("invalid_api_key")), False),
        (ValueError("bug"), False),
        ("not an exception", False),
    ],
)
def test_retry_condition_follows_the_policy(outcome: Any, expected: bool) -> None:
    condition = make_retry_condition(RetryPolicy())
    assert inspect.isfunction(condition)  # Prefect needs a plain function
    assert condition(None, None, FakeState(outcome)) is expected


def test_retry_condition_reads_state_data_and_awaits_async_results() -> None:
    condition = make_retry_condition(RetryPolicy())

    class DataState:
        data = connection_error()

    assert condition(None, None, DataState()) is True
    pending = condition(None, None, FakeState(connection_error(), awaitable=True))
    assert inspect.isawaitable(pending)
    assert asyncio.run(pending) is True  # type: ignore[arg-type]
