"""Re-asks for the invalid fields only: the plan, the schema of the subset, the merge, the
request sent (against the simulator, through the real client), and the whole re-ask kept
for errors that are not about one field; re-sends after a cut answer."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from extraction_models import TICKET_TEXT, Ticket
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sim_adapter import MODEL, sim_call

from prefect_openai_chat.extraction import run_extraction
from prefect_openai_chat.extraction.answer_sizes import ANSWER_SIZES, room_needed
from prefect_openai_chat.extraction.partial import merge_answer, plan_partial, subset_model
from prefect_openai_chat.extraction.schema import schema_spec
from prefect_openai_chat.results import ChatResult, Usage


class Line(BaseModel):
    sku: str
    qty: int = Field(ge=1)


class Order(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    order_id: str = Field(alias="orderId", description="The order number.")
    status: Literal["open", "shipped"]
    lines: list[Line]
    note: str | None = None


class Priced(BaseModel):
    amount: float
    currency: str | None = None

    @model_validator(mode="after")
    def _currency_with_amount(self) -> Priced:
        if self.currency is None:
            raise ValueError("currency is required with an amount")
        return self


def _error(schema: type[BaseModel], data: Any) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        schema.model_validate(data)
    return caught.value


def test_the_plan_keeps_valid_fields_and_asks_for_invalid_nested_and_left_out_ones() -> None:
    data = {"orderId": "A-1", "status": "lost", "lines": [{"sku": "x", "qty": 0}]}
    ask = plan_partial(Order, data, _error(Order, data))
    assert ask is not None
    # the nested error asks for its whole top-level field; `note` was left out: asked too
    assert ask.keys == ("status", "lines", "note")
    assert ask.kept == {"orderId": "A-1"}
    assert ask.wrong == {"status": "lost", "lines": [{"sku": "x", "qty": 0}]}
    answer = {"status": "open", "lines": [{"sku": "x", "qty": 2}], "note": None, "orderId": "B"}
    merged = merge_answer(ask, answer)
    assert merged == {"orderId": "A-1", **{k: answer[k] for k in ask.keys}}  # kept value stands
    assert Order.model_validate(merged).lines == [Line(sku="x", qty=2)]


def test_the_subset_schema_has_only_those_fields_with_aliases_nesting_and_descriptions() -> None:
    sub = subset_model(Order, ("orderId", "lines"))
    assert sub is subset_model(Order, ("orderId", "lines"))  # made once
    spec = schema_spec(sub)
    assert spec.strict and set(spec.json_schema["properties"]) == {"orderId", "lines"}
    assert spec.json_schema["properties"]["orderId"]["description"] == "The order number."
    assert "Line" in spec.json_schema.get("$defs", {})  # the nested model comes along
    assert sub.model_validate({"orderId": "A", "lines": []}).model_dump() == {
        "order_id": "A",
        "lines": [],
    }


def test_errors_not_about_one_field_get_no_partial_plan() -> None:
    data = {"amount": 5.0, "currency": None}
    assert plan_partial(Priced, data, _error(Priced, data)) is None  # a model validator
    assert plan_partial(Order, ["not", "an", "object"], _error(Order, [])) is None

    class Closed(BaseModel):
        model_config = ConfigDict(extra="forbid")
        a: int

    assert plan_partial(Closed, {"a": 1, "b": 2}, _error(Closed, {"a": 1, "b": 2})) is None


def test_a_wrapped_partial_answer_is_unwrapped_and_keys_not_asked_for_are_ignored() -> None:
    data = {"orderId": "A-1", "status": "lost", "lines": [], "note": None}
    ask = plan_partial(Order, data, _error(Order, data))
    assert ask is not None and ask.keys == ("status",)
    assert merge_answer(ask, {"OrderFields": {"status": "open"}})["status"] == "open"
    assert merge_answer(ask, "no") == "no"


async def test_a_partial_reask_sends_the_record_the_invalid_values_and_a_subset_schema(
    ideal_sim: Any,
) -> None:
    call = sim_call(ideal_sim, "wrong-types")
    result = await run_extraction(call, Ticket, TICKET_TEXT, model=MODEL)
    assert result.ok and (result.calls, result.reprompts) == (2, 1), result.errors
    assert result.value is not None and result.value.customer == "Ada Lovelace"
    (first, _), (again, params) = call.sent
    assert [m["role"] for m in again] == ["system", "user", "assistant", "user"]
    assert again[1] == first[1]  # the record, as it was
    assert len(again[2]["content"]) < len(result.raw_outputs[0]) / 2  # the invalid values only
    assert again[3]["content"].startswith("Fix only these fields:\n- ")
    assert "allowed" in again[3]["content"] and '"' not in again[3]["content"]  # no value list
    sub = params["response_format"]["json_schema"]
    assert sub["name"] == "TicketFields"
    asked = set(sub["schema"]["properties"])
    assert asked and asked < set(Ticket.model_json_schema()["properties"])
    assert result.usage.prompt_tokens > 0
    whole = sim_call(ideal_sim, "wrong-types")
    same = await run_extraction(whole, Ticket, TICKET_TEXT, model=MODEL, reask_scope="whole")
    assert same.ok and same.value is not None and same.value.customer == "Ada Lovelace"
    assert result.usage.total_tokens < same.usage.total_tokens  # cheaper than a whole re-ask


async def test_a_model_level_error_falls_back_to_a_whole_reask(ideal_sim: Any) -> None:
    text = "Customer: Alan Turing\nEmail: alan@example.com\nPriority: low\nCategory: billing"
    call = sim_call(ideal_sim)
    result = await run_extraction(call, Ticket, text, model=MODEL, max_reprompts=1)
    assert result.outcome == "invalid" and "needs an amount" in (result.reason or "")
    (first, params), (again, again_params) = call.sent
    assert again[:2] == first and again_params == params  # the whole exchange, whole schema
    assert again[2]["role"] == "assistant" and "needs an amount" in again[3]["content"]


async def test_a_cut_answer_keeps_its_finished_fields_and_asks_for_the_rest(
    ideal_sim: Any,
) -> None:
    call = sim_call(ideal_sim, "truncated-json")
    result = await run_extraction(call, Ticket, TICKET_TEXT, model=MODEL)
    assert result.ok and result.finish_reasons[0] == "length" and result.reprompts == 0
    (_, _), (again, params) = call.sent
    asked = set(params["response_format"]["json_schema"]["schema"]["properties"])
    assert asked and asked < set(Ticket.model_json_schema()["properties"])
    assert again[-1]["content"].startswith("Your answer was cut off. Give only these fields: ")
    assert all(key in again[-1]["content"] for key in asked)


async def test_a_lazy_answer_keeps_the_fields_written_in_full_and_asks_for_the_rest(
    ideal_sim: Any,
) -> None:
    call = sim_call(ideal_sim, "lazy")
    result = await run_extraction(call, Ticket, TICKET_TEXT, model=MODEL)
    assert result.ok and result.reprompts == 1, result.errors
    assert result.value is not None and result.value.customer == "Ada Lovelace"
    (first, _), (again, params) = call.sent
    asked = set(params["response_format"]["json_schema"]["schema"]["properties"])
    assert asked and asked < set(Ticket.model_json_schema()["properties"])
    assert again[:2] == first and again[2] == {"role": "assistant", "content": "{}"}
    assert again[3]["content"].startswith("Your answer used placeholders. Give only these")
    whole = sim_call(ideal_sim, "lazy")
    same = await run_extraction(whole, Ticket, TICKET_TEXT, model=MODEL, reask_scope="whole")
    assert same.ok and same.value is not None and same.value.customer == "Ada Lovelace"
    assert result.usage.total_tokens < same.usage.total_tokens  # cheaper than a whole re-ask


async def test_a_placeholder_inside_a_list_asks_for_the_whole_field_again() -> None:
    answers = iter(
        [
            '{"customer": "Ada", "email": "ada@example.com", "priority": "high",'
            ' "category": "bug", "amount": null, "address": null, "tags": ["a", ...],'
            ' "retries": 0}',
            '{"tags": ["a", "b"], "retries": 0}',
        ]
    )
    sent: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []

    async def call(messages: list[dict[str, Any]], params: dict[str, Any]) -> ChatResult:
        sent.append((messages, params))
        return ChatResult(content=next(answers), finish_reason="stop", usage=Usage())

    result = await run_extraction(call, Ticket, TICKET_TEXT, model=MODEL)
    assert result.ok and result.reprompts == 1, result.errors
    assert result.value is not None and result.value.tags == ["a", "b"]
    # the list with the placeholder and the field after it are asked for, never kept cut
    asked = set(sent[1][1]["response_format"]["json_schema"]["schema"]["properties"])
    assert {"tags"} <= asked and "customer" not in asked


async def test_a_partial_answer_that_is_not_json_gets_a_whole_reask() -> None:
    answers = iter(
        [
            '{"customer": "Ada", "email": "ada@example.com", "priority": "urgent",'
            ' "category": "bug", "amount": null, "address": null, "tags": [], "retries": 0}',
            "Sorry, here you go: nothing",
            '{"customer": "Ada", "email": "ada@example.com", "priority": "high",'
            ' "category": "bug", "amount": null, "address": null, "tags": [], "retries": 0}',
        ]
    )
    sent: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []

    async def call(messages: list[dict[str, Any]], params: dict[str, Any]) -> ChatResult:
        sent.append((messages, params))
        return ChatResult(content=next(answers), finish_reason="stop", usage=Usage())

    result = await run_extraction(call, Ticket, TICKET_TEXT, model=MODEL)
    assert result.ok and result.reprompts == 2
    assert sent[1][1]["response_format"]["json_schema"]["name"] == "TicketFields"
    assert sent[2][1] == sent[0][1]  # back to the whole schema


def test_length_resends_are_sized_from_the_answers_seen() -> None:
    assert room_needed(60, None, 2.0, first=True) == 120  # nothing seen: grown
    assert room_needed(60, 200, 2.0, first=True) == 250  # what such answers need, +25%
    assert room_needed(300, 80, 2.0, first=True) == 316  # never below the last limit
    assert room_needed(250, 200, 2.0, first=False) == 500  # cut again: grown

    class Seen(BaseModel):
        a: int

    ANSWER_SIZES.seen(Seen, 40)
    ANSWER_SIZES.seen(Seen, 30)
    assert ANSWER_SIZES.largest(Seen) == 40


async def test_a_whole_resend_is_sized_from_the_answers_seen(ideal_sim: Any) -> None:
    ANSWER_SIZES.clear()
    clean = sim_call(ideal_sim)
    done = await run_extraction(clean, Ticket, TICKET_TEXT, model=MODEL)
    assert done.ok and ANSWER_SIZES.largest(Ticket) == done.usage.completion_tokens
    call = sim_call(ideal_sim, "truncated-json")
    result = await run_extraction(
        call, Ticket, TICKET_TEXT, model=MODEL, max_completion_tokens=20, reask_scope="whole"
    )
    assert result.ok, result.errors
    limits = [p["max_completion_tokens"] for _, p in call.sent]
    assert limits == [20, max(36, round(done.usage.completion_tokens * 1.25 + 0.4999))]
