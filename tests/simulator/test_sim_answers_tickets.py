"""The demo's tickets through the simulator: extracted values come from each ticket's text."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from openai import OpenAI

from prefect_openai_chat.examples.tickets import (
    TICKET_INSTRUCTIONS,
    TICKET_PROMPT,
    SupportTicket,
    sample_tickets_path,
)
from prefect_openai_chat.extraction.prompts import build_request

MODEL = "gpt-4o-mini"
ORDER = re.compile(r"ORD-\d{5}")


def _sample() -> list[dict[str, str]]:
    rows = [json.loads(line) for line in sample_tickets_path().read_text("utf-8").splitlines()]
    return rows[::6]  # 50 of the 300, spread over the file


SAMPLE = _sample()


def _extract(client: OpenAI, ticket: dict[str, str], mode: str = "json_schema") -> dict[str, Any]:
    """One ticket as the demo sends it; the answer's JSON (from content or the tool call)."""
    messages, params = build_request(
        SupportTicket, TICKET_PROMPT.format(**ticket), TICKET_INSTRUCTIONS, mode, model=MODEL
    )
    reply = client.chat.completions.create(model=MODEL, messages=messages, **params)  # type: ignore[arg-type]
    message = reply.choices[0].message
    text = message.tool_calls[0].function.arguments if message.tool_calls else message.content  # type: ignore[union-attr]
    data: dict[str, Any] = json.loads(text or "")
    return data


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _numbers(text: str) -> set[float]:
    return {float(n.replace(",", "")) for n in re.findall(r"\d[\d,]*(?:\.\d+)?", text)}


@pytest.fixture(scope="module")
def answers(simulator: Any) -> list[tuple[dict[str, str], str, dict[str, Any]]]:
    with simulator.client() as client:
        return [(t, TICKET_PROMPT.format(**t), _extract(client, t)) for t in SAMPLE]


def test_the_sample_is_representative() -> None:
    assert len(SAMPLE) == 50
    assert sum(bool(ORDER.search(TICKET_PROMPT.format(**t))) for t in SAMPLE) >= 20


def test_order_ids_are_the_tickets_own(answers: list[Any]) -> None:
    for _, text, data in answers:
        in_text = ORDER.findall(text)
        if in_text:
            assert data["order_id"] == in_text[0], text
        else:
            assert data["order_id"] is None, text


def test_emails_names_and_products_are_from_the_text(answers: list[Any]) -> None:
    for _, text, data in answers:
        assert data["email"] in text
        assert data["product"] in text, (data["product"], text)
        assert not data["product"].startswith("product ")
        words = set(_words(text))
        assert all(w in words or w in text.lower() for w in _words(data["customer_name"]))


def test_summaries_are_short_sentences_from_the_text(answers: list[Any]) -> None:
    for _, text, data in answers:
        summary = _words(data["summary"])
        assert 1 <= len(summary) <= 16 and not data["summary"].startswith("summary ")
        words = set(_words(text))
        assert sum(w in words for w in summary) >= 0.8 * len(summary), (data["summary"], text)


def test_amounts_dates_and_enums_follow_the_text(answers: list[Any]) -> None:
    for ticket, text, data in answers:
        if data["amount"] is not None:
            assert data["amount"] in _numbers(text)
            assert data["currency"] is not None
        if data["incident_date"] is not None:
            assert data["incident_date"][:4] in text
        topic = re.search(r"^Topic: (.+)$", ticket["body"], re.MULTILINE)
        if topic:  # web forms say the category; the keywords must agree
            assert data["category"] == topic.group(1).lower().replace(" ", "_"), text


def test_answers_validate_except_the_designed_hard_case(answers: list[Any]) -> None:
    invalid = []
    for ticket, _, data in answers:
        try:
            SupportTicket.model_validate(data)
        except ValueError:
            invalid.append(ticket["ticket_id"])
    swiss = [t["ticket_id"] for t in SAMPLE if "CHF" in t["body"]]
    assert invalid == swiss  # an amount in francs has no allowed currency, by design


@pytest.mark.parametrize("mode", ["json_object", "tools"])
def test_other_modes_and_repeats_give_the_same_values(simulator: Any, mode: str) -> None:
    with simulator.client() as client:
        for ticket in SAMPLE[:10]:
            first = _extract(client, ticket, mode)
            assert _extract(client, ticket, mode) == first  # deterministic for a seed
            schema_answer = _extract(client, ticket)
            for field in ("order_id", "email", "product", "customer_name", "summary"):
                assert first[field] == schema_answer[field]
