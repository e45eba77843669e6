"""extract / aextract inside real Prefect flows, against the `sloppy-json` simulator over HTTP.

Each failure shape is forced per request with the `x-simulator-fault` header (sent
by the ChatModel's credentials on every request; the simulator answers re-prompts
correctly regardless) or with a scripted first request, so the outcomes are exact.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from prefect import flow
from pydantic import BaseModel

from prefect_openai_chat import ChatModel, Extraction, OpenAICredentials, aextract, extract
from prefect_openai_chat.blocks.sections import nest_flat_fields
from prefect_openai_chat.errors import InsufficientQuotaError
from prefect_openai_chat.examples.tickets import SupportTicket, TicketTriage
from prefect_openai_chat.simulator import Simulator

MODEL = "gpt-4o-mini-2024-07-18"
ROOM = 400  # max_completion_tokens of the test model: truncation numbers are exact

TICKET = (
    "Subject: Wrong price charged\n\nName: Wei Farouk\nEmail: wei.farouk@acme-logistics.com\n"
    "Order ID: ORD-25347\n\nThe Brew Mini espresso machine was advertised at a lower price"
    " but I paid €207.90 on 2023-12-23. Can you refund the difference?"
)
# An amount with no currency anywhere: every answer breaks SupportTicket's business rule.
NO_CURRENCY = (
    "Subject: Refund\n\nName: Ada Byron\nEmail: ada.byron@example.org\nAmount: 120\n\n"
    "Please refund my order ORD-48213, the kettle arrived broken."
)


@pytest.fixture(autouse=True)
def _isolated_results(isolated_results: None) -> None:
    """Task results (and so the task cache) per test."""


@pytest.fixture(scope="module")
def sloppy() -> Iterator[Simulator]:
    with Simulator(profile="sloppy-json", seed=5) as simulator:
        yield simulator


@pytest.fixture
def sim(sloppy: Simulator) -> Iterator[Simulator]:
    """The sloppy-json simulator, counters zeroed; scripts and rate changes undone after."""
    sloppy.reset()
    yield sloppy
    sloppy.configure(script=[], fault_rates=_sloppy_rates())
    sloppy.reset()


def _sloppy_rates() -> dict[str, float]:
    from prefect_openai_chat.simulator import PROFILES

    return dict(PROFILES["sloppy-json"].fault_rates)


def model_for(sim: Simulator, fault: str | None = None, **settings: Any) -> ChatModel:
    """A ChatModel on the simulator; `fault` goes out as `x-simulator-fault` on every request."""
    headers = {"x-simulator-fault": fault} if fault else None
    credentials = OpenAICredentials(
        base_url=sim.base_url, api_key=sim.api_key, default_headers=headers
    )
    options: dict[str, Any] = {"max_completion_tokens": ROOM, "read_timeout_s": 5.0}
    options.update(settings)
    return ChatModel(credentials=credentials, model=MODEL, **nest_flat_fields(options))


def run_extract(chat_model: ChatModel, schema: type[BaseModel], text: Any, **kw: Any) -> Any:
    @flow
    def one_record() -> Extraction[Any]:
        return extract(chat_model, schema, text, **kw)

    return one_record()


def assert_billed(result: Extraction[Any], sim: Simulator) -> None:
    """Usage summed over every attempt is exactly what the simulator billed."""
    stats = sim.stats()
    assert stats.requests == result.calls
    assert result.usage.prompt_tokens == stats.prompt_tokens > 0
    assert result.usage.completion_tokens == stats.completion_tokens
    assert len(result.errors) == len(result.raw_outputs) - result.ok
    assert len(result.finish_reasons) == len(result.request_ids) == result.calls
    assert result.cost_usd is not None and result.cost_usd > 0


# --- repaired locally: one request, no re-prompt -----------------------------------------


@pytest.mark.parametrize("fault", ["fenced-json", "prose-json", "malformed-json"])
def test_local_repair_needs_no_reprompt(sim: Simulator, fault: str) -> None:
    result = run_extract(model_for(sim, fault), SupportTicket, TICKET)

    assert result.ok and result.outcome == "ok" and result.reason is None
    assert isinstance(result.value, SupportTicket)
    assert result.value.email == "wei.farouk@acme-logistics.com"
    assert result.value.order_id == "ORD-25347"
    assert (result.value.amount, result.value.currency) == (207.9, "EUR")
    assert result.repaired is True
    assert (result.calls, result.reprompts, result.errors) == (1, 0, [])
    assert sim.stats().by_fault == {fault: 1}
    assert sim.stats().reprompts == 0
    assert_billed(result, sim)


def test_clean_answer_is_not_marked_repaired(sim: Simulator) -> None:
    result = run_extract(model_for(sim, "ok"), SupportTicket, TICKET)

    assert result.ok and result.repaired is False
    assert (result.calls, result.reprompts, result.finish_reasons) == (1, 0, ["stop"])
    assert_billed(result, sim)


# --- re-prompted: schema violations and lazy answers ----------------------------------------


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("wrong-types", ["customer_name: Input should be a valid string", "UNKNOWN_VALUE"]),
        ("missing-fields", ["required field is missing"]),
        ("lazy", ["placeholders instead of content"]),
    ],
)
async def test_invalid_answer_is_reprompted_once(
    sim: Simulator, fault: str, expected: list[str]
) -> None:
    chat_model = model_for(sim, fault)

    @flow
    async def one_record() -> Extraction[Any]:
        return await aextract(chat_model, SupportTicket, TICKET)

    result = await one_record()

    assert result.ok and isinstance(result.value, SupportTicket)
    assert (result.calls, result.reprompts) == (2, 1)
    assert result.repaired is False
    assert result.finish_reasons == ["stop", "stop"]
    assert len(result.errors) == 1 and result.errors[0].startswith("attempt 1: ")
    for text in expected:
        assert text in result.errors[0]
    assert sim.stats().reprompts == 1
    assert_billed(result, sim)


def test_enum_violation_names_the_allowed_values(sim: Simulator) -> None:
    result = run_extract(model_for(sim, "wrong-types"), SupportTicket, TICKET)

    assert result.ok
    error = result.errors[0]
    assert "category" in error
    assert '"billing", "bug", "shipping", "account", "feature_request"' in error
    assert "UNKNOWN_VALUE" not in result.raw_outputs[-1]
    assert "UNKNOWN_VALUE" in result.raw_outputs[0]


def test_custom_validator_failure_is_reprompted_then_quarantined(sim: Simulator) -> None:
    result = run_extract(model_for(sim, "ok"), SupportTicket, NO_CURRENCY, max_reprompts=2)

    assert not result.ok and result.outcome == "invalid" and result.value is None
    assert (result.calls, result.reprompts) == (3, 2)
    assert len(result.errors) == 3
    assert all("currency is required when amount is set" in e for e in result.errors)
    assert "after 2 re-prompts" in (result.reason or "")
    assert sim.stats().reprompts == 2
    assert_billed(result, sim)


def test_callers_messages_are_never_changed(sim: Simulator) -> None:
    messages = [
        {"role": "system", "content": "You read support tickets."},
        {"role": "user", "content": TICKET},
    ]
    before = [dict(m) for m in messages]

    result = run_extract(model_for(sim, "missing-fields"), SupportTicket, messages)

    assert result.ok and result.reprompts == 1
    assert messages == before


# --- truncation: never taken as it is; its finished fields kept, the rest asked -----------


def test_a_cut_answer_keeps_its_finished_fields_and_the_rest_is_asked(sim: Simulator) -> None:
    # every first ask is cut (the simulator fills the limit, then cuts); the ask for the
    # rest is a follow-up, which it answers
    result = run_extract(model_for(sim, "truncated-json"), SupportTicket, TICKET)

    assert result.ok and result.outcome == "ok" and result.value is not None
    assert result.calls == 2 and result.reprompts == 0  # a length retry, not a re-ask
    assert result.finish_reasons == ["length", "stop"]
    # ROOM for the cut answer, then only the fields it did not finish
    assert ROOM < result.usage.completion_tokens < ROOM + ROOM // 4
    assert result.errors == [
        f"attempt 1: truncated at the token limit ({ROOM} completion tokens); not parsed"
    ]
    assert sim.stats().reprompts == 1  # the simulator sees a follow-up
    assert_billed(result, sim)


def test_truncated_once_keeps_its_fields_and_asks_for_the_rest(sim: Simulator) -> None:
    sim.configure(script=["truncated-json"], fault_rates={})
    sim.reset()

    result = run_extract(model_for(sim), SupportTicket, TICKET)

    assert result.ok and result.outcome == "ok"
    assert result.calls == 2 and result.reprompts == 0
    assert result.finish_reasons == ["length", "stop"]
    assert result.repaired is False  # the cut text itself was never taken as the answer
    assert result.errors == [
        f"attempt 1: truncated at the token limit ({ROOM} completion tokens); not parsed"
    ]
    assert_billed(result, sim)


# --- final outcomes: not re-asked ---------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "outcome", "finish", "settings"),
    [
        ("refusal", "refused", "stop", {}),
        ("content-filter", "content_filter", "content_filter", {}),
        ("content-filter", "content_filter", "content_filter", {"content_filter": "flag"}),
    ],
    ids=["refusal", "content-filter-raise", "content-filter-flag"],
)
def test_refusal_and_content_filter_are_not_reasked(
    sim: Simulator, fault: str, outcome: str, finish: str, settings: dict[str, Any]
) -> None:
    result = run_extract(model_for(sim, fault, **settings), SupportTicket, TICKET)

    assert not result.ok and result.outcome == outcome and result.value is None
    assert (result.calls, result.reprompts) == (1, 0)
    assert result.finish_reasons == [finish]
    assert result.reason and len(result.errors) == 1
    assert sim.stats().requests == 1
    stats = sim.stats()
    assert result.usage.prompt_tokens == stats.prompt_tokens
    assert result.usage.completion_tokens == stats.completion_tokens


def test_token_budget_too_small_for_one_attempt_sends_nothing(sim: Simulator) -> None:
    result = run_extract(model_for(sim), SupportTicket, TICKET, token_budget=100)

    assert not result.ok and result.outcome == "budget"
    assert "token budget of 100" in (result.reason or "")
    assert result.calls == 0 and sim.stats().requests == 0


# --- the task cache -------------------------------------------------------------------------


def test_second_flow_run_is_served_from_the_task_cache(sim: Simulator) -> None:
    chat_model = model_for(sim, "wrong-types")
    first = run_extract(chat_model, SupportTicket, TICKET)
    assert first.ok and sim.stats().requests == 2

    sim.reset()
    again = run_extract(chat_model, SupportTicket, TICKET)
    assert sim.stats().requests == 0
    assert again.value == first.value and again.usage == first.usage

    run_extract(chat_model, SupportTicket, TICKET, instructions="Only the customer's fields.")
    assert sim.stats().requests == 2  # changed instructions: a new answer

    sim.reset()
    triage = run_extract(chat_model, TicketTriage, TICKET)
    assert isinstance(triage.value, TicketTriage)
    assert sim.stats().requests == 2  # changed schema: a new answer

    sim.reset()
    run_extract(model_for(sim, "wrong-types", temperature=0.2), SupportTicket, TICKET)
    assert sim.stats().requests == 2  # changed generation parameters: a new answer


async def test_async_task_cache_and_credentials_are_not_part_of_the_key(sim: Simulator) -> None:
    @flow
    async def one_record(chat_model: ChatModel) -> Extraction[Any]:
        return await aextract(chat_model, SupportTicket, TICKET)

    first = await one_record(model_for(sim, "fenced-json"))
    assert first.ok and sim.stats().requests == 1
    sim.reset()
    # other headers (credentials, clients) do not change what determines the answer
    again = await one_record(model_for(sim, "refusal"))
    assert again.ok and again.value == first.value
    assert sim.stats().requests == 0


def test_a_failed_call_is_not_cached(sim: Simulator) -> None:
    with pytest.raises(InsufficientQuotaError):
        run_extract(model_for(sim, "quota"), SupportTicket, TICKET)
    assert sim.stats().requests == 1  # never retried

    sim.reset()
    result = run_extract(model_for(sim, "ok"), SupportTicket, TICKET)
    assert result.ok
    assert sim.stats().requests == 1


async def test_saved_block_name_works_and_caches(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    name = "extract-tasks-saved-model"
    await model_for(sim, "fenced-json").save(name, overwrite=True)

    @flow
    async def by_name() -> Extraction[Any]:
        return await aextract(name, SupportTicket, TICKET)

    @flow
    def by_name_sync() -> Extraction[Any]:
        return extract(name, SupportTicket, TICKET)

    first = await by_name()
    assert first.ok and first.repaired and sim.stats().requests == 1
    sim.reset()
    with caplog.at_level(logging.INFO, logger="prefect.task_runs"):
        assert by_name_sync().value == first.value  # the same cache key from the sync twin
    assert sim.stats().requests == 0
    assert "extract SupportTicket: from the cache" in caplog.text  # in the task run's log
