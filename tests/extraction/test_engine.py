"""`run_extraction` against the simulator, through the real AsyncOpenAI client."""

from __future__ import annotations

import asyncio
import copy
import itertools
from typing import Any

import openai
import pytest
from extraction_models import PERSON_TEXT, TICKET_TEXT, Person, Priority, Ticket
from pydantic import BaseModel
from sim_adapter import MODEL, sim_call

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction import run_extraction
from prefect_openai_chat.extraction.answer_sizes import MIN_COMPLETION_ROOM
from prefect_openai_chat.results import ChatResult
from prefect_openai_chat.tokens import count_message_tokens, estimate_cost


def _requests(sim: Any) -> int:
    return int(sim.stats().requests)


async def test_a_clean_answer_takes_one_call_and_its_usage_is_exact(ideal_sim: Any) -> None:
    call = sim_call(ideal_sim)
    result = await run_extraction(call, Ticket, TICKET_TEXT, model=MODEL)
    assert result.ok and result.outcome == "ok" and result.reason is None
    assert result.value is not None and isinstance(result.value, Ticket)
    assert result.value.customer == "Ada Lovelace"
    assert result.value.email == "ada@example.com"
    assert result.value.priority is Priority.high and result.value.category == "billing"
    assert result.value.amount == 42.5
    assert (result.calls, result.reprompts, result.repaired) == (1, 0, False)
    messages, params = call.sent[0]  # the schema of a `json_schema` format is billed too
    assert result.usage.prompt_tokens == count_message_tokens(
        messages, MODEL, response_format=params["response_format"]
    )
    assert result.usage.prompt_tokens > count_message_tokens(messages, MODEL) + 100
    assert result.cost_usd == estimate_cost(
        MODEL, result.usage.prompt_tokens, result.usage.completion_tokens
    )
    assert params["response_format"]["json_schema"]["strict"] is True
    assert result.finish_reasons == ["stop"] and len(result.request_ids) == 1
    assert result.request_ids[0] and result.latency_s > 0
    assert result.raw_outputs[0].startswith("{") and result.errors == []


@pytest.mark.parametrize("mode", ["json_object", "tools", "json_schema"])
async def test_every_mode_works_end_to_end(ideal_sim: Any, mode: str) -> None:
    call = sim_call(ideal_sim)
    result = await run_extraction(call, Person, PERSON_TEXT, model=MODEL, mode=mode)
    assert result.ok, result.errors
    assert result.value == Person(name="Grace Hopper", age=85, email="grace@example.com")
    assert result.calls == 1


@pytest.mark.parametrize("fault", ["fenced-json", "prose-json", "malformed-json"])
async def test_local_fixes_cost_no_extra_call(ideal_sim: Any, fault: str) -> None:
    before = _requests(ideal_sim)
    result = await run_extraction(sim_call(ideal_sim, fault), Ticket, TICKET_TEXT, model=MODEL)
    assert result.ok and result.repaired, result.errors
    assert result.calls == 1 and result.reprompts == 0
    assert _requests(ideal_sim) - before == 1
    assert result.value is not None and result.value.email == "ada@example.com"


@pytest.mark.parametrize(
    ("fault", "schema", "text", "expected_in_correction"),
    [
        ("wrong-types", Ticket, TICKET_TEXT, 'allowed: "low", "medium", "high"'),
        ("missing-fields", Person, PERSON_TEXT, "required field is missing"),
        ("lazy", Ticket, TICKET_TEXT, "placeholders"),
    ],
)
async def test_invalid_answers_are_reprompted_once(
    ideal_sim: Any, fault: str, schema: type[BaseModel], text: str, expected_in_correction: str
) -> None:
    caller = [{"role": "user", "content": text}]
    before = copy.deepcopy(caller)
    call = sim_call(ideal_sim, fault)
    result = await run_extraction(call, schema, caller, model=MODEL, reask_scope="whole")
    assert result.ok, result.errors
    assert (result.calls, result.reprompts, result.repaired) == (2, 1, False)
    assert len(result.errors) == 1 and result.errors[0].startswith("attempt 1:")
    reprompt, _ = call.sent[1]
    assert [m["role"] for m in reprompt] == ["system", "user", "assistant", "user"]
    assert reprompt[:2] == call.sent[0][0]
    assert reprompt[2]["content"] == result.raw_outputs[0].strip()
    assert expected_in_correction in reprompt[3]["content"]
    assert caller == before  # never mutated
    assert result.usage.prompt_tokens == sum(
        count_message_tokens(m, MODEL, response_format=p["response_format"]) for m, p in call.sent
    )


async def test_truncation_is_never_parsed_and_retried_with_more_room(ideal_sim: Any) -> None:
    call = sim_call(ideal_sim, "truncated-json")
    result = await run_extraction(
        call, Ticket, TICKET_TEXT, model=MODEL, max_completion_tokens=120, reask_scope="whole"
    )
    assert result.ok and not result.repaired and result.reprompts == 0
    assert result.finish_reasons == ["length", "stop"]
    assert "truncated" in result.errors[0] and "not parsed" in result.errors[0]
    (first_messages, first), (second_messages, second) = call.sent
    assert second_messages == first_messages  # the same messages, no truncated text in them
    # sized from what the cut answer shows, at most doubled (length_growth)
    assert first["max_completion_tokens"] == 120
    assert 120 + MIN_COMPLETION_ROOM <= second["max_completion_tokens"] <= 240
    assert result.usage.completion_tokens > 120  # the truncated attempt is paid for too


async def test_truncation_gives_up_after_bounded_growth(ideal_sim: Any) -> None:
    call = sim_call(ideal_sim, *["truncated-json"] * 5)
    result = await run_extraction(
        call,
        Ticket,
        TICKET_TEXT,
        model=MODEL,
        max_completion_tokens=50,
        reask_scope="whole",
        max_length_retries=2,
        length_growth=3.0,
        max_completion_cap=400,
    )
    assert not result.ok and result.outcome == "truncated" and result.value is None
    limits = [p["max_completion_tokens"] for _, p in call.sent]
    assert limits[0] == 50 and len(limits) == 3  # max_length_retries bounds the re-sends
    assert all(a < b <= min(3 * a, 400) for a, b in itertools.pairwise(limits))
    assert result.calls == 3 and result.finish_reasons == ["length"] * 3
    assert "token limit" in (result.reason or "") and "max_completion_tokens" in (
        result.reason or ""
    )


async def test_truncation_stops_at_the_cap(ideal_sim: Any) -> None:
    call = sim_call(ideal_sim, *["truncated-json"] * 5)
    result = await run_extraction(
        call,
        Ticket,
        TICKET_TEXT,
        model=MODEL,
        max_completion_tokens=60,
        max_completion_cap=100,
        reask_scope="whole",
    )
    assert result.outcome == "truncated"
    limits = [p["max_completion_tokens"] for _, p in call.sent]
    assert limits[0] == 60 and limits[-1] == 100 and len(limits) <= 3
    assert "limit of 100" in (result.reason or "")


@pytest.mark.parametrize(
    ("fault", "outcome", "words"),
    [("refusal", "refused", "sorry"), ("content-filter", "content_filter", "content filter")],
)
async def test_refusals_and_content_filter_are_not_reasked(
    ideal_sim: Any, fault: str, outcome: str, words: str
) -> None:
    before = _requests(ideal_sim)
    result = await run_extraction(sim_call(ideal_sim, fault), Ticket, TICKET_TEXT, model=MODEL)
    assert not result.ok and result.outcome == outcome and words in (result.reason or "")
    assert result.calls == 1 and _requests(ideal_sim) - before == 1
    assert result.usage.prompt_tokens > 0  # paid for


async def test_business_rules_are_reprompted_and_the_conversation_stays_bounded(
    ideal_sim: Any,
) -> None:
    text = "Customer: Alan Turing\nEmail: alan@example.com\nPriority: low\nCategory: billing"
    call = sim_call(ideal_sim)
    result = await run_extraction(call, Ticket, text, model=MODEL, max_reprompts=3)
    # no amount in the text: the model validator fails every time
    assert result.outcome == "invalid" and not result.ok
    assert "a billing ticket needs an amount" in (result.reason or "")
    assert "after 3 re-prompts" in (result.reason or "")
    assert result.calls == 4 and result.reprompts == 3 and len(result.errors) == 4
    sizes = [len(messages) for messages, _ in call.sent]
    assert sizes == [2, 4, 4, 4]
    assert all("needs an amount" in m[-1]["content"] for m, _ in call.sent[1:])


async def test_one_reprompt_for_a_lazy_answer_only(ideal_sim: Any) -> None:
    call = sim_call(ideal_sim, "lazy", "lazy", "lazy")
    result = await run_extraction(call, Ticket, TICKET_TEXT, model=MODEL, max_reprompts=5)
    # the simulator answers re-prompts correctly unless forced; forced twice, it stays lazy
    assert result.outcome in ("invalid", "ok")
    if result.outcome == "invalid":
        assert result.calls == 2 and "also after a re-prompt" in (result.reason or "")


async def test_token_budget_stops_before_an_attempt_that_could_exceed_it(ideal_sim: Any) -> None:
    before = _requests(ideal_sim)
    result = await run_extraction(
        sim_call(ideal_sim), Ticket, TICKET_TEXT, model=MODEL, token_budget=50
    )
    assert result.outcome == "budget" and result.calls == 0
    assert _requests(ideal_sim) == before  # nothing was sent
    assert "token budget of 50" in (result.reason or "")


async def test_token_budget_covers_all_attempts(ideal_sim: Any) -> None:
    whole = {"reask_scope": "whole"}  # a re-ask as large as the first ask, or larger
    first = await run_extraction(
        sim_call(ideal_sim, "wrong-types"), Ticket, TICKET_TEXT, model=MODEL, **whole
    )
    one_attempt = first.usage.prompt_tokens // 2 + 200  # room for one attempt, not two
    call = sim_call(ideal_sim, "wrong-types")
    result = await run_extraction(
        call, Ticket, TICKET_TEXT, model=MODEL, token_budget=one_attempt, **whole
    )
    assert result.outcome == "budget" and result.calls == 1
    assert result.usage.total_tokens <= one_attempt
    # without max_completion_tokens, the budget left is the completion room
    assert call.sent[0][1]["max_completion_tokens"] <= one_attempt


async def test_errors_of_the_call_propagate_or_return(ideal_sim: Any) -> None:
    with pytest.raises(openai.InternalServerError):
        await run_extraction(sim_call(ideal_sim, "500"), Person, PERSON_TEXT, model=MODEL)
    result = await run_extraction(
        sim_call(ideal_sim, "wrong-types", "500"),
        Person,
        PERSON_TEXT,
        model=MODEL,
        on_error="return",
    )
    assert result.outcome == "error" and result.calls == 2
    assert "InternalServerError" in (result.reason or "")
    assert result.usage.prompt_tokens > 0  # the first attempt is still counted


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "yaml"}, "mode must be one of"),
        ({"max_reprompts": -1}, "max_reprompts"),
        ({"length_growth": 1.0}, "length_growth"),
        ({"token_budget": 0}, "token_budget"),
    ],
)
async def test_bad_arguments_fail_before_any_call(
    ideal_sim: Any, kwargs: dict[str, Any], match: str
) -> None:
    call = sim_call(ideal_sim)
    with pytest.raises(InvalidInputError, match=match):
        await run_extraction(call, Person, PERSON_TEXT, model=MODEL, **kwargs)
    assert call.sent == []


async def test_a_second_lazy_answer_is_not_reasked() -> None:
    # the simulator answers re-prompts properly, so a scripted call plays the lazy model
    lazy = ChatResult(
        content='{"name": "Grace", "age": "...", // ... rest\n}', finish_reason="stop"
    )
    sent: list[list[dict[str, Any]]] = []

    async def call(messages: list[dict[str, Any]], params: dict[str, Any]) -> ChatResult:
        sent.append(messages)
        return lazy

    result = await run_extraction(call, Person, PERSON_TEXT, model=MODEL, max_reprompts=5)
    assert result.outcome == "invalid" and result.calls == 2 and result.reprompts == 1
    assert "also after a re-prompt" in (result.reason or "")
    assert "placeholders" in sent[1][-1]["content"]


async def test_sloppy_json_profile_ends_valid_and_accounts_every_request() -> None:
    from prefect_openai_chat.simulator import Simulator

    people = [(f"Person Number{i}", 20 + i % 60, f"p{i}@example.com") for i in range(120)]
    with Simulator(profile="sloppy-json", seed=11) as sim:
        call = sim_call(sim)
        results = await asyncio.gather(
            *(
                run_extraction(
                    call, Person, f"Name: {n}\nAge: {a}\nEmail: {e}", model=MODEL, mode=mode
                )
                for (n, a, e), mode in zip(
                    people, ["auto", "json_object", "tools"] * 40, strict=True
                )
            )
        )
        stats = sim.stats()
    assert all(r.ok for r in results), [r.reason for r in results if not r.ok]
    assert [r.value for r in results] == [Person(name=n, age=a, email=e) for n, a, e in people]
    assert stats.requests == sum(r.calls for r in results)
    # follow-ups: re-asks, and asks for the rest of a cut answer (counted as length retries)
    follow_ups = sum(any(m["role"] == "assistant" for m in sent) for sent, _ in call.sent)
    assert stats.reprompts == follow_ups >= sum(r.reprompts for r in results)
    assert any(r.repaired for r in results)  # fixed locally
    assert any(r.reprompts for r in results)  # fixed by asking again
    assert any("length" in r.finish_reasons for r in results)  # truncated, then given room
