"""Prices in USD per million tokens, and `estimate_cost`.

The prices are a column of the model table (`tokens/models.py`), which says when it
was checked. A `ChatModel` block can override any row. Unknown models give `None`:
the plugin never guesses a price.

Example:
    >>> from prefect_openai_chat.tokens import estimate_cost
    >>> estimate_cost("gpt-4o-mini", prompt_tokens=1_000_000, completion_tokens=0)
    0.15
"""

from __future__ import annotations

from collections.abc import Mapping

from prefect_openai_chat.tokens.models import PRICES_CHECKED_ON, Price, family_of, family_prices

BATCH_DISCOUNT = 0.5  # the Batch API bills every token class at half the online rate
__all__ = ["BATCH_DISCOUNT", "PRICES", "PRICES_CHECKED_ON", "Price", "estimate_cost", "price_for"]

# By family, read from the one model table (`tokens/models.py`).
PRICES: dict[str, Price] = family_prices()


def price_for(model: str, overrides: Mapping[str, Price] | None = None) -> Price | None:
    """The price row for `model` (overrides first, by exact name then family), else None."""
    family = family_of(model)
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
