"""Schema-generic answers: fields get the text's values by name, pattern, type and description."""

from __future__ import annotations

import json
from typing import Any, Literal

from openai import OpenAI
from pydantic import BaseModel, Field

from prefect_openai_chat.simulator.choices import pick
from prefect_openai_chat.simulator.facts import TextFacts
from prefect_openai_chat.simulator.phrases import products, summary, writer

TEXT = (
    "Subject: Parcel lost and app broken\n\n"
    "Hello,\n\nThis is Priya Sharma. My parcel for case CS-48213 never came: the UPS tracking"
    " (1Z9876543210) has not moved since 2024-05-02. Also the Nimbus home app crashes with"
    ' "Unexpected error (code 7)" since the update to version 3.4.1. I paid €59.00 and I am'
    " really disappointed.\n\nKind regards,\nPriya Sharma\npriya.sharma@example.org"
)


class Claim(BaseModel):
    case_ref: str = Field(pattern=r"^CS-\d{5}$")
    ticket_id: str | None = None
    tracking_number: str | None = None
    carrier: str | None = None
    app_version: str | None = None
    error_message: str | None = None
    reporter: str
    device: str
    sentiment: Literal["positive", "neutral", "negative"]
    problem: Literal["lost", "damaged", "late"] = Field(description="What went wrong.")
    urgency: Literal["low", "normal", "high"] | None = Field(
        default=None, description="high if the customer cannot work, low for questions"
    )
    reason: str
    products: list[str] = Field(default_factory=list)


def _ask(client: OpenAI, model: type[BaseModel], text: str) -> dict[str, Any]:
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": model.__name__, "schema": model.model_json_schema()},
    }
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": text}],
        response_format=fmt,  # type: ignore[arg-type]
    )
    data: dict[str, Any] = json.loads(reply.choices[0].message.content or "")
    return data


def test_fields_take_the_texts_values_by_name_and_pattern(client: OpenAI) -> None:
    data = _ask(client, Claim, TEXT)
    assert data["case_ref"] == "CS-48213"  # by pattern
    assert data["ticket_id"] is None  # nothing in the text names a ticket
    assert data["tracking_number"] == "1Z9876543210"  # the id written after "tracking"
    assert data["carrier"] == "UPS"
    assert data["app_version"] == "3.4.1"
    assert data["error_message"] == "Unexpected error (code 7)"
    assert data["reporter"] == "Priya Sharma"
    assert data["device"] == "Nimbus home app"
    assert data["sentiment"] == "negative"  # by keyword
    assert data["problem"] == "lost"
    assert data["urgency"] is None  # nullable and nothing in the text says it
    assert data["reason"].startswith("My parcel for case CS-48213 never came")
    assert data["products"] == ["Nimbus home app"]
    Claim.model_validate(data)


def test_without_evidence_a_required_field_still_validates(client: OpenAI) -> None:
    data = _ask(client, Claim, "nothing useful here")
    Claim.model_validate({**data, "case_ref": "CS-00000"})  # no pattern match to be found
    assert data["sentiment"] == "neutral"  # the catch-all option
    assert data["products"] == []


def test_enum_keywords_come_from_the_description() -> None:
    description = (
        "billing (charges, refunds, invoices), bug (something broken), shipping (delivery)"
    )
    options = ["billing", "bug", "shipping"]
    assert pick(options, description, "The delivery never came")[0] == "shipping"
    assert pick(options, description, "Please send the invoices")[0] == "billing"
    assert pick(["low", "medium", "high"], "medium by default", "hello") == ("medium", 0)
    assert pick(["a", "b"], "", "hello") == (None, 0)


def test_phrases_on_their_own() -> None:
    assert products("I bought the Glide e-scooter and a Lumen desk lamp.") == [
        "Glide e-scooter",
        "Lumen desk lamp",
    ]
    assert products("App crashes. Thanks for this. Do I get a refund?") == []
    assert writer("hi\nanna here, email anna.sato20@web.de", ["anna.sato20@web.de"]) == "Anna Sato"
    assert writer("Thanks,\nMaria", []) == "Maria"
    assert summary("Hi team,\n\nMy name is Ada. The Kettle Pro 1.7L leaks water all over the kitchen"
                   " counter every single morning since May.") == (
        "The Kettle Pro 1.7L leaks water all over the kitchen counter..."
    )  # fmt: skip
    facts = TextFacts("paid USD 43 for it, then €12.50")
    assert facts.amounts == [(43.0, "USD"), (12.5, "EUR")]
