"""Issue 21, in the engine: the schema's own code raising, and values no output can hold,
are problems of the answer (re-asked, then `invalid`), never a crash and never `ok`.

The answers here are scripted through the engine's own `call` interface (as its doctest
does): the simulator never answers `NaN`, and these tests are about what comes back.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from prefect_openai_chat.extraction import run_extraction
from prefect_openai_chat.results import ChatResult


def _answers(*texts: str) -> Any:
    """A `call` that answers `texts` in turn and keeps what it was sent."""
    sent: list[list[dict[str, Any]]] = []

    async def call(messages: list[dict[str, Any]], params: dict[str, Any]) -> ChatResult:
        sent.append(messages)
        return ChatResult(content=texts[len(sent) - 1], finish_reason="stop")

    call.sent = sent  # type: ignore[attr-defined]
    return call


class Reading(BaseModel):
    sensor: str
    value: float
    count: int = 0


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ('{"sensor": "a", "value": NaN}', "value: nan is not a finite number"),
        ('{"sensor": "a", "value": -Infinity}', "value: -inf is not a finite number"),
        (
            '{"sensor": "a", "value": 1, "count": 99999999999999999999}',
            "count: 99999999999999999999 does not fit a 64-bit integer column",
        ),
    ],
)
async def test_an_unstorable_value_is_reasked_then_invalid(answer: str, reason: str) -> None:
    call = _answers(answer, answer)
    result = await run_extraction(call, Reading, "text", model="gpt-4o-mini", max_reprompts=1)
    assert (result.ok, result.outcome, result.calls, result.reprompts) == (False, "invalid", 2, 1)
    assert reason in (result.reason or "")
    assert reason in call.sent[1][-1]["content"]  # the model was told what to fix


async def test_an_unstorable_value_corrected_on_the_reask_is_valid() -> None:
    call = _answers('{"sensor": "a", "value": NaN}', '{"sensor": "a", "value": 2.5}')
    result = await run_extraction(call, Reading, "text", model="gpt-4o-mini")
    assert result.ok and result.value == Reading(sensor="a", value=2.5) and result.reprompts == 1


class Invoice(BaseModel):
    amount: int
    total: int

    @field_validator("total")
    @classmethod
    def _with_amount(cls, value: int, info: ValidationInfo) -> int:
        return value + info.data["amount"]  # KeyError when `amount` failed


async def test_a_validator_raising_key_error_is_a_problem_of_the_answer() -> None:
    call = _answers('{"amount": "lots", "total": 1}', '{"amount": 2, "total": 1}')
    result = await run_extraction(call, Invoice, "text", model="gpt-4o-mini")
    assert result.ok and result.value == Invoice(amount=2, total=1)
    assert "KeyError: 'amount'" in result.errors[0]


class Doubled(BaseModel):
    count: int
    doubled: int = Field(default_factory=lambda data: data["count"] * 2)
    ratio: float = Field(default_factory=lambda data: 1 / data["count"])


async def test_data_dependent_default_factories_apply_and_their_errors_are_problems() -> None:
    ok = await run_extraction(_answers('{"count": 4}'), Doubled, "t", model="gpt-4o-mini")
    assert ok.ok and ok.value == Doubled(count=4, doubled=8, ratio=0.25)
    call = _answers('{"count": 0}', '{"count": 0}')
    bad = await run_extraction(call, Doubled, "t", model="gpt-4o-mini", max_reprompts=1)
    assert (bad.ok, bad.outcome) == (False, "invalid")
    assert "ZeroDivisionError: division by zero" in (bad.reason or "")
