"""An answer that ends inside a string, with `finish_reason` "stop": cut short all the same.

A `stop` sequence the caller set, or an OpenAI-compatible server that reports "stop" at
its own limit, ends an answer mid-value; the local repair used to close the string and
take the cut text as the value (`"summary": "The customer was charg"`), valid. Now the
fields before it stand and the cut one is asked for again. Through the real AsyncOpenAI
client against the simulator's scripted answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel
from sim_adapter import MODEL, sim_call

from prefect_openai_chat.extraction import parse_output, run_extraction
from prefect_openai_chat.results import ChatResult
from prefect_openai_chat.simulator.scripted import ScriptedAnswer

TEXT = "@@1 Bob Stone from Oslo was charged twice."
CUT = '{"name": "Bob Stone", "city": "Oslo", "summary": "The customer was charg'


class Ticket(BaseModel):
    name: str
    city: str
    summary: str


@pytest.fixture
def scripted(ideal_sim: Any) -> Iterator[Any]:
    yield ideal_sim
    ideal_sim.configure(answers={})


def test_only_an_open_string_at_the_end_counts_as_cut() -> None:
    assert parse_output(CUT).cut
    assert parse_output('{"a": "x\\"').cut  # an escaped quote does not close it
    for whole in ('{"a": "x"', '{"a": ["x", "y"', '{"a": 12', "{'a': 'x'", '{"a": "x\\\\"'):
        outcome = parse_output(whole)
        assert outcome.kind == "json" and not outcome.cut, whole


async def test_the_fields_before_the_cut_stand_and_the_cut_one_is_asked_again(
    scripted: Any,
) -> None:
    scripted.configure(answers={"@@1": ScriptedAnswer(content=CUT)})
    call = sim_call(scripted)

    async def then_in_full(messages: list[dict[str, Any]], params: Any) -> ChatResult:
        result = await call(messages, params)
        scripted.configure(answers={"@@1": ScriptedAnswer(content='{"summary": "Charged twice."}')})
        return result

    result = await run_extraction(then_in_full, Ticket, TEXT, model=MODEL)
    assert result.ok and result.value == Ticket(
        name="Bob Stone", city="Oslo", summary="Charged twice."
    )
    assert result.calls == 2
    assert call.sent[1][0][-1]["content"] == (
        "Your answer was cut off. Give only these fields: summary."
    )


async def test_a_cut_value_is_never_stored_as_valid(scripted: Any) -> None:
    scripted.configure(answers={"@@1": ScriptedAnswer(content=CUT)})
    result = await run_extraction(sim_call(scripted), Ticket, TEXT, model=MODEL, max_reprompts=1)
    assert not result.ok and result.outcome == "invalid" and result.value is None
    assert "ended inside a string (cut short)" in (result.reason or "")
