"""Dated price table, in USD per million tokens, and `estimate_cost`.

Prices change; the table says when it was checked. A `ChatModel` block can
override any row. Unknown models give `None`: the plugin never guesses a price.

Example:
    >>> from prefect_openai_chat.tokens import estimate_cost
    >>> estimate_cost("gpt-4o-mini", prompt_tokens=1_000_000, completion_tokens=0)
    0.15
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prefect_openai_chat.tokens.models import _family_of

PRICES_CHECKED_ON = "2025-08-07"
BATCH_DISCOUNT = 0.5  # the Batch API bills every token class at half the online rate


@dataclass(frozen=True)
class Price:
    """USD per million input, cached-input and output tokens."""

    input: float
    cached_input: float
    output: float


PRICES: dict[str, Price] = {
    "gpt-3.5-turbo": Price(0.50, 0.50, 1.50),
    "gpt-4": Price(30.0, 30.0, 60.0),
    "gpt-4-32k": Price(60.0, 60.0, 120.0),
    "gpt-4-turbo": Price(10.0, 10.0, 30.0),
    "gpt-4-1106": Price(10.0, 10.0, 30.0),
    "gpt-4-0125": Price(10.0, 10.0, 30.0),
    "gpt-4o": Price(2.50, 1.25, 10.0),
    "gpt-4o-mini": Price(0.15, 0.075, 0.60),
    "chatgpt-4o": Price(5.0, 5.0, 15.0),
    "gpt-4.1": Price(2.00, 0.50, 8.00),
    "gpt-4.1-mini": Price(0.40, 0.10, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.025, 0.40),
    "gpt-4.5": Price(75.0, 37.5, 150.0),
    "o1": Price(15.0, 7.50, 60.0),
    "o1-mini": Price(1.10, 0.55, 4.40),
    "o3": Price(2.00, 0.50, 8.00),
    "o3-mini": Price(1.10, 0.55, 4.40),
    "o4-mini": Price(1.10, 0.275, 4.40),
    "gpt-5": Price(1.25, 0.125, 10.0),
    "gpt-5-mini": Price(0.25, 0.025, 2.00),
    "gpt-5-nano": Price(0.05, 0.005, 0.40),
}


def price_for(model: str, overrides: Mapping[str, Price] | None = None) -> Price | None:
    """The price row for `model` (overrides first, by exact name then family), else None."""
    family = _family_of(model)
    for table in (overrides or {}, PRICES):
        for name in (model, family):
            if name is not None and name in table:
                return table[name]
    return None


def estimate_cost(
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int = 0,
    prices: Mapping[str, Price] | None = None,
    batch: bool = False,
) -> float | None:
    """Cost in USD of one call; `cached_tokens` are the part of `prompt_tokens` read from cache.

    Cached tokens are billed at the model's cached-input rate; `batch=True` bills a Batch
    API request at `BATCH_DISCOUNT` of the online rate.

    Example:
        >>> estimate_cost("gpt-4o-mini", 2_000_000, 0, cached_tokens=1_000_000)
        0.225
        >>> estimate_cost("gpt-4o-mini", 2_000_000, 0, cached_tokens=1_000_000, batch=True)
        0.1125
    """
    price = price_for(model, prices)
    if price is None:
        return None
    cached = min(max(cached_tokens, 0), prompt_tokens)
    usd = (
        (prompt_tokens - cached) * price.input
        + cached * price.cached_input
        + completion_tokens * price.output
    ) / 1_000_000
    if batch:
        usd *= BATCH_DISCOUNT
    return round(usd, 10)
