"""Schemas the extraction tests share: enums, literals, nesting and custom validators."""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator


class Priority(str, Enum):
    """How urgent a ticket is."""

    low = "low"
    medium = "medium"
    high = "high"


class Address(BaseModel):
    """A postal address."""

    city: str
    zip: str | None = None


class Ticket(BaseModel):
    """A support ticket."""

    customer: str = Field(description="The customer's full name.", max_length=80)
    email: str
    priority: Priority
    category: Literal["billing", "bug", "feature"]
    amount: float | None = None
    address: Address | None = None
    tags: list[str] = Field(default_factory=list)
    retries: int = 0

    @field_validator("email")
    @classmethod
    def _email_has_at(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError("must be an email address containing '@'")
        return value

    @model_validator(mode="after")
    def _billing_needs_amount(self) -> Ticket:
        if self.category == "billing" and self.amount is None:
            raise ValueError("a billing ticket needs an amount")
        return self


class Person(BaseModel):
    """A person named in a text."""

    name: str
    age: int
    email: str


class FreeForm(BaseModel):
    """Cannot be strict: a free-form mapping and an Any field."""

    labels: dict[str, int]
    extra: Any = None


TICKET_TEXT = (
    "Customer: Ada Lovelace\n"
    "Email: ada@example.com\n"
    "Priority: high\n"
    "Category: billing\n"
    "Amount: 42.50\n"
    "I was charged twice for my subscription this month."
)
PERSON_TEXT = "Name: Grace Hopper\nAge: 85\nEmail: grace@example.com"
VALID_TICKET: dict[str, Any] = {
    "customer": "Ada Lovelace",
    "email": "ada@example.com",
    "priority": "high",
    "category": "billing",
    "amount": 42.5,
    "address": None,
    "tags": [],
    "retries": 0,
}
