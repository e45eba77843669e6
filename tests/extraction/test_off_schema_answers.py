"""Answers none of whose keys is the schema's: never a value of defaults marked valid.

A schema whose fields all have defaults takes any object, so `{"Contact": {...}}` or
`{"full_name": "Bob"}` validated into a value holding nothing the model said: a silent
wrong value. A wrapper is now unwrapped, other such answers are re-asked (then
`invalid`); an answer with unknown keys beside known ones, or `{}`, is left alone.
Through the real AsyncOpenAI client against the simulator's scripted answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import AliasChoices, AliasPath, BaseModel, Field, RootModel
from sim_adapter import MODEL, sim_call

from prefect_openai_chat.extraction import run_extraction
from prefect_openai_chat.results import ChatResult
from prefect_openai_chat.simulator.scripted import ScriptedAnswer

TEXT = "@@1 Bob Stone, bob@example.com"


class Contact(BaseModel):
    name: str | None = None
    email: str | None = None


class ByChoices(BaseModel):
    name: str | None = Field(None, validation_alias=AliasChoices("fullName", "name"))


class ByPath(BaseModel):
    name: str | None = Field(None, validation_alias=AliasPath("person", "name"))


class Counts(RootModel[dict[str, int]]):
    """A value whose keys are its own."""


@pytest.fixture
def scripted(ideal_sim: Any) -> Iterator[Any]:
    yield ideal_sim
    ideal_sim.configure(answers={})


def answer_with(sim: Any, content: str) -> None:
    sim.configure(answers={"@@1": ScriptedAnswer(content=content)})


async def test_a_wrapper_around_the_value_is_unwrapped_at_no_extra_call(scripted: Any) -> None:
    answer_with(scripted, '{"Contact": {"name": "Bob Stone", "email": "bob@example.com"}}')
    result = await run_extraction(sim_call(scripted), Contact, TEXT, model=MODEL)
    assert result.ok and result.value == Contact(name="Bob Stone", email="bob@example.com")
    assert (result.calls, result.repaired) == (1, True)


async def test_keys_that_are_none_of_the_schema_s_are_re_asked(scripted: Any) -> None:
    answer_with(scripted, '{"full_name": "Bob Stone", "mail": "bob@example.com"}')
    call = sim_call(scripted)

    async def then_the_model_s_own(messages: list[dict[str, Any]], params: Any) -> ChatResult:
        result = await call(messages, params)
        scripted.configure(answers={})  # the re-ask gets the simulator's schema answer
        return result

    result = await run_extraction(then_the_model_s_own, Contact, TEXT, model=MODEL)
    assert result.ok and result.calls == 2 and result.reprompts == 1
    correction = call.sent[1][0][-1]["content"]
    assert "none of the answer's keys ('full_name', 'mail') is a field of the schema" in correction
    assert "answer with the keys 'name', 'email'" in correction


async def test_the_same_off_schema_answer_again_ends_invalid_not_valid(scripted: Any) -> None:
    answer_with(scripted, '{"full_name": "Bob Stone"}')
    result = await run_extraction(sim_call(scripted), Contact, TEXT, model=MODEL, max_reprompts=1)
    assert not result.ok and result.outcome == "invalid" and result.value is None
    assert "none of the answer's keys ('full_name')" in (result.reason or "")
    assert result.calls == 2


@pytest.mark.parametrize(
    ("schema", "content", "expected"),
    [
        (Contact, "{}", Contact()),  # nothing found: the defaults are the answer
        (Contact, '{"name": "Bob Stone", "phone": "1"}', Contact(name="Bob Stone")),
        (ByChoices, '{"fullName": "Bob Stone"}', ByChoices(fullName="Bob Stone")),
        (ByPath, '{"person": {"name": "Bob Stone"}}', ByPath(person={"name": "Bob Stone"})),
        (Counts, '{"bob": 1, "stone": 2}', Counts({"bob": 1, "stone": 2})),
    ],
)
async def test_answers_the_schema_knows_are_taken_as_they_are(
    scripted: Any, schema: type[BaseModel], content: str, expected: BaseModel
) -> None:
    answer_with(scripted, content)
    result = await run_extraction(sim_call(scripted), schema, TEXT, model=MODEL)
    assert result.ok and result.value == expected and result.calls == 1


class Person(BaseModel):
    name: str
    email: str | None = None


async def test_a_partial_re_ask_answered_off_its_fields_is_asked_again(scripted: Any) -> None:
    """The re-ask for `email` answered as `{"mail": ...}` merged into email=None, valid."""
    answers = iter(
        [
            '{"name": "Bob Stone", "email": 5}',  # email invalid: a re-ask for it alone
            '{"mail": "bob@example.com"}',  # none of the fields asked for
            '{"email": "bob@example.com"}',
        ]
    )
    answer_with(scripted, next(answers))
    call = sim_call(scripted)

    async def in_turn(messages: list[dict[str, Any]], params: Any) -> ChatResult:
        result = await call(messages, params)
        answer_with(scripted, next(answers, "{}"))
        return result

    result = await run_extraction(in_turn, Person, TEXT, model=MODEL, max_reprompts=2)
    assert result.ok and result.value == Person(name="Bob Stone", email="bob@example.com")
    assert result.calls == 3
    again = call.sent[2][0]  # the same field asked again, the answer shown as it was
    assert again[-2]["content"] == '{"mail":"bob@example.com"}'
    assert "none of the answer's keys ('mail')" in again[-1]["content"]
    assert "answer with the keys 'email'" in again[-1]["content"]
