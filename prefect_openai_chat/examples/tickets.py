"""Example schemas: what the demo and the nightly deployment extract from support tickets.

`SupportTicket` is the row `extract_records` writes for every ticket of the sample
data set (`prefect_openai_chat/data/tickets.jsonl`). `TicketTriage` classifies a
ticket, and `SCHEMA_FOR_KIND` routes each class to a narrower schema
(`RefundRequest`, `BugReport`, `ShippingIssue`) for the `triage_then_extract` flow.
Deployments name a schema by its import path,
`"prefect_openai_chat.examples.tickets:SupportTicket"`.

Every field has a description (the model reads it), and the validators hold the
business rules: a failure takes part in re-prompts like a type error.

Example:
    >>> ticket = SupportTicket(
    ...     customer_name="Ada Lovelace", email="ada@example.org", order_id="ord 48213",
    ...     product="Pulse smartwatch", category="billing", priority="high",
    ...     amount=149.0, currency="EUR", incident_date="2024-03-14",
    ...     summary="Charged twice for one smartwatch order.",
    ... )
    >>> ticket.order_id, ticket.incident_date.isoformat()
    ('ORD-48213', '2024-03-14')
    >>> triage = TicketTriage(kind="shipping", confidence=0.8, reason="Parcel never came.")
    >>> SCHEMA_FOR_KIND[triage.kind].__name__
    'ShippingIssue'
    >>> ShippingIssue(order_id="ORD-20417", problem="damaged", summary="Box crushed.").carrier
"""

from __future__ import annotations

import datetime
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

__all__ = [
    "EMAIL_PATTERN",
    "ORDER_ID_PATTERN",
    "SCHEMA_FOR_KIND",
    "TICKET_INSTRUCTIONS",
    "TICKET_PROMPT",
    "BugReport",
    "RefundRequest",
    "ShippingIssue",
    "SupportTicket",
    "TicketTriage",
    "sample_tickets_path",
]

EMAIL_PATTERN = r"^[^@\s<>]+@[^@\s<>]+\.[A-Za-z]{2,}$"
"""A plain email address, `name@domain.tld` (no display name, no angle brackets)."""

ORDER_ID_PATTERN = r"^ORD-\d{5}$"
"""An order number as the shop prints it, `ORD-12345`."""

TICKET_PROMPT = "Subject: {subject}\n\n{body}"
"""The prompt template over a sample ticket's fields (`str.format` style)."""

TICKET_INSTRUCTIONS = (
    "You read one customer support ticket and fill in the requested fields. Use only what"
    " the customer wrote; leave a field null when the ticket does not say. Money amounts"
    " are numbers without symbols, with the ISO currency code in `currency`."
)
"""System instructions that go with `TICKET_PROMPT`."""

Category = Literal["billing", "bug", "shipping", "account", "feature_request"]
Priority = Literal["low", "medium", "high", "urgent"]
Currency = Literal["USD", "EUR", "GBP"]
TriageKind = Literal["refund", "bug", "shipping", "other"]

_NULL_WORDS = {"", "none", "null", "n/a", "na", "-", "unknown"}
_ORDER_LOOSE = re.compile(r"#?\s*ORD[\s_-]?(\d{5})", re.IGNORECASE)


def _clean_email(value: Any) -> Any:
    """`" <Ada@Example.org> "` or `"mailto:ada@example.org"` -> `"ada@example.org"`."""
    if isinstance(value, str):
        value = value.strip().strip("<>").strip()
        if value.lower().startswith("mailto:"):
            value = value[len("mailto:") :]
        return value.lower()
    return value


def _clean_order_id(value: Any) -> Any:
    """`"ord 48213"`, `"#ORD48213"` -> `"ORD-48213"`; empty or `"n/a"` -> None."""
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _NULL_WORDS:
            return None
        match = _ORDER_LOOSE.fullmatch(text)
        if match:
            return f"ORD-{match.group(1)}"
        return text
    return value


def _null_if_empty(value: Any) -> Any:
    """Empty strings and words like `"n/a"` mean "not said" for optional fields."""
    if isinstance(value, str) and value.strip().lower() in _NULL_WORDS:
        return None
    return value


# --- the general row ------------------------------------------------------------------


class SupportTicket(BaseModel):
    """One customer support ticket, as structured fields read from the customer's own text."""

    customer_name: str = Field(
        min_length=1,
        max_length=100,
        description="The customer's full name as they wrote or signed it.",
    )
    email: str = Field(
        pattern=EMAIL_PATTERN,
        max_length=254,
        description="The customer's email address, e.g. ada@example.org.",
    )
    order_id: str | None = Field(
        default=None,
        pattern=ORDER_ID_PATTERN,
        description="The order number the ticket is about, formatted ORD-12345; null if none.",
    )
    product: str = Field(
        min_length=1,
        max_length=80,
        description="The product or service the ticket is about, as the customer names it.",
    )
    category: Category = Field(
        description=(
            "What the ticket is about: billing (charges, refunds, invoices), bug (something"
            " broken), shipping (delivery), account (login, profile, data) or feature_request."
        ),
    )
    priority: Priority = Field(
        description=(
            "urgent for money lost or a service down now, high for a blocked customer,"
            " medium by default, low for questions and wishes."
        ),
    )
    amount: float | None = Field(
        default=None,
        ge=0,
        description=(
            "The money amount the ticket is about (the disputed or refund amount if several"
            " are mentioned), as a number without symbols; null if no amount is mentioned."
        ),
    )
    currency: Currency | None = Field(
        default=None,
        description="ISO code of `amount`: USD for $, EUR for €, GBP for £; null if no amount.",
    )
    incident_date: datetime.date | None = Field(
        default=None,
        description=(
            "When the problem happened or the order was placed, YYYY-MM-DD, if the customer"
            " gives a date; null otherwise."
        ),
    )
    summary: str = Field(
        min_length=1,
        max_length=200,
        description="One sentence, at most 200 characters, saying what the customer needs.",
    )

    _email = field_validator("email", mode="before")(_clean_email)
    _order_id = field_validator("order_id", mode="before")(_clean_order_id)
    _optional = field_validator("amount", "currency", "incident_date", mode="before")(
        _null_if_empty
    )

    @model_validator(mode="after")
    def _currency_goes_with_amount(self) -> SupportTicket:
        """Business rule: an amount without its currency is not a usable money figure."""
        if self.amount is not None and self.currency is None:
            raise ValueError(
                "currency is required when amount is set: give the ISO code of the amount"
                " (USD, EUR or GBP), or set amount to null if the ticket names no amount"
            )
        return self


# --- triage and the narrower schemas it routes to -------------------------------------


class TicketTriage(BaseModel):
    """Which kind of ticket this is, so that the right schema reads it next."""

    kind: TriageKind = Field(
        description=(
            "refund if the customer wants money back, bug if something does not work,"
            " shipping for delivery problems, other for everything else."
        ),
    )
    confidence: float = Field(
        ge=0.0, le=1.0, description="How sure the classification is, from 0.0 to 1.0."
    )
    reason: str = Field(
        min_length=1, max_length=200, description="A short sentence saying why this kind."
    )


class RefundRequest(BaseModel):
    """A request for money back: who, which order, how much and why."""

    customer_name: str = Field(
        min_length=1, max_length=100, description="The customer's full name."
    )
    email: str = Field(
        pattern=EMAIL_PATTERN, max_length=254, description="The customer's email address."
    )
    order_id: str | None = Field(
        default=None,
        pattern=ORDER_ID_PATTERN,
        description="The order to refund, formatted ORD-12345; null if none is given.",
    )
    amount: float = Field(gt=0, description="The amount the customer wants back, a number.")
    currency: Currency = Field(description="ISO code of `amount`: USD, EUR or GBP.")
    reason: Literal[
        "double_charge", "wrong_price", "defective", "not_received", "cancelled", "other"
    ] = Field(description="Why the customer wants the money back.")
    summary: str = Field(
        min_length=1, max_length=200, description="One sentence saying what happened."
    )

    _email = field_validator("email", mode="before")(_clean_email)
    _order_id = field_validator("order_id", mode="before")(_clean_order_id)


class BugReport(BaseModel):
    """Something in a product or app does not work as it should."""

    product: str = Field(
        min_length=1, max_length=80, description="The product, app or device that misbehaves."
    )
    platform: Literal["web", "ios", "android", "windows", "macos", "linux", "device", "unknown"] = (
        Field(description="Where it happens; device for hardware and firmware problems.")
    )
    app_version: str | None = Field(
        default=None,
        max_length=30,
        description="The app or firmware version the customer quotes, e.g. 4.2.1; null if none.",
    )
    severity: Literal["minor", "major", "critical"] = Field(
        description="critical if nothing works or data is lost, major if a feature is broken."
    )
    error_message: str | None = Field(
        default=None,
        max_length=300,
        description="The error text the customer quotes, verbatim; null if none.",
    )
    steps_to_reproduce: list[str] = Field(
        default_factory=list,
        max_length=10,
        description="What the customer did before the problem, one short step per item.",
    )
    summary: str = Field(
        min_length=1, max_length=200, description="One sentence describing the problem."
    )

    _optional = field_validator("app_version", "error_message", mode="before")(_null_if_empty)


class ShippingIssue(BaseModel):
    """A delivery went wrong: late, lost, damaged, wrong item, or the address must change."""

    order_id: str | None = Field(
        default=None,
        pattern=ORDER_ID_PATTERN,
        description="The order number, formatted ORD-12345; null if none is given.",
    )
    problem: Literal["late", "lost", "damaged", "wrong_item", "address_change"] = Field(
        description="What went wrong with the delivery."
    )
    carrier: str | None = Field(
        default=None,
        max_length=40,
        description="The delivery company the customer names (DHL, UPS, ...); null if none.",
    )
    tracking_number: str | None = Field(
        default=None,
        max_length=40,
        description="The parcel's tracking number as written; null if none.",
    )
    expected_delivery: datetime.date | None = Field(
        default=None,
        description="The promised delivery date, YYYY-MM-DD; null if the ticket gives none.",
    )
    summary: str = Field(
        min_length=1, max_length=200, description="One sentence saying what the customer needs."
    )

    _order_id = field_validator("order_id", mode="before")(_clean_order_id)
    _optional = field_validator("carrier", "tracking_number", "expected_delivery", mode="before")(
        _null_if_empty
    )


SCHEMA_FOR_KIND: dict[str, type[BaseModel]] = {
    "refund": RefundRequest,
    "bug": BugReport,
    "shipping": ShippingIssue,
    "other": SupportTicket,
}
"""The schema that reads a ticket of each `TicketTriage.kind`."""


def sample_tickets_path() -> Path:
    """The sample data set shipped in the package: 300 support tickets as JSONL."""
    return Path(str(resources.files("prefect_openai_chat") / "data" / "tickets.jsonl"))
