"""Problems from validation errors, and the bounded re-prompt conversation."""

from __future__ import annotations

import copy

import pytest
from extraction_models import VALID_TICKET, Ticket
from pydantic import ValidationError

from prefect_openai_chat.extraction import problems_from_error, reprompt_messages, validate
from prefect_openai_chat.extraction.reprompt import (
    MAX_ANSWER_CHARS,
    Problem,
    correction_for_lazy,
    correction_for_problems,
    correction_for_unparseable,
    format_path,
)


def _problems(data: dict[str, object]) -> list[Problem]:
    with pytest.raises(ValidationError) as info:
        validate(Ticket, data)
    return problems_from_error(info.value, Ticket)


def test_missing_fields() -> None:
    data = {k: v for k, v in VALID_TICKET.items() if k not in ("priority", "email")}
    problems = _problems(data)
    assert [(p.path, p.problem) for p in problems] == [
        ("email", "required field is missing"),
        ("priority", "required field is missing"),
    ]
    assert all(p.got is None for p in problems)


def test_wrong_types_show_the_value_that_was_given() -> None:
    problems = _problems({**VALID_TICKET, "amount": "42 units", "retries": "three"})
    by_path = {p.path: p for p in problems}
    assert by_path["amount"].got == '"42 units"'
    assert "number" in by_path["amount"].problem
    assert "integer" in by_path["retries"].problem


def test_enum_and_literal_violations_list_the_allowed_values() -> None:
    problems = _problems({**VALID_TICKET, "priority": "URGENT", "category": "UNKNOWN_VALUE"})
    by_path = {p.path: p for p in problems}
    assert by_path["priority"].allowed == ("low", "medium", "high")
    assert by_path["category"].allowed == ("billing", "bug", "feature")
    assert str(by_path["priority"]) == (
        "priority: Input should be 'low', 'medium' or 'high'"
        ' (allowed: "low", "medium", "high"; got "URGENT")'
    )


def test_custom_validators_take_part_like_type_errors() -> None:
    (field_problem,) = _problems({**VALID_TICKET, "email": "ada at example"})
    assert field_problem.path == "email"
    assert field_problem.problem == "must be an email address containing '@'"
    (model_problem,) = _problems({**VALID_TICKET, "amount": None})
    assert model_problem.path == "(the whole object)"
    assert model_problem.problem == "a billing ticket needs an amount"


def test_nested_paths() -> None:
    problems = _problems({**VALID_TICKET, "address": {"zip": 1}, "tags": ["a", 2]})
    paths = {p.path for p in problems}
    assert {"address.city", "address.zip", "tags[1]"} <= paths
    assert format_path(("items", 2, "price")) == "items[2].price"


def test_the_list_of_problems_is_capped() -> None:
    with pytest.raises(ValidationError) as info:
        validate(Ticket, {**VALID_TICKET, "tags": list(range(40))})
    problems = problems_from_error(info.value, Ticket, limit=5)
    assert len(problems) == 5 and problems[-1].problem == "and 36 more problems"


def test_correction_texts() -> None:
    problems = [Problem("priority", "bad", ("low",), '"x"')]
    text = correction_for_problems(problems)
    assert '- priority: bad (allowed: "low"; got "x")' in text
    assert "JSON object only" in text
    assert "Call `Ticket` again" in correction_for_problems(problems, tool_name="Ticket")
    assert "'// ...'" in correction_for_lazy(["// ..."])
    assert "complete" in correction_for_lazy([])
    assert "(no JSON here)" in correction_for_unparseable("no JSON here")


def test_reprompt_never_mutates_and_never_grows() -> None:
    base = [{"role": "system", "content": "sys"}, {"role": "user", "content": "text"}]
    before = copy.deepcopy(base)
    first = reprompt_messages(base, '{"a": 1}', "fix a")
    second = reprompt_messages(base, '{"a": 2}', "fix a again")
    assert base == before
    assert [m["role"] for m in first] == ["system", "user", "assistant", "user"]
    assert len(second) == len(first) == len(base) + 2
    assert second[-2] == {"role": "assistant", "content": '{"a": 2}'}
    assert second[-1] == {"role": "user", "content": "fix a again"}
    second[0]["content"] = "changed"
    assert base[0]["content"] == "sys"


def test_a_huge_last_answer_is_cut() -> None:
    messages = reprompt_messages([{"role": "user", "content": "t"}], "x" * 50_000, "fix")
    assert len(messages[1]["content"]) < MAX_ANSWER_CHARS + 50
    assert reprompt_messages([{"role": "user", "content": "t"}], "", "fix")[1]["content"]
