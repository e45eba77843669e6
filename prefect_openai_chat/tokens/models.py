"""The one table of what the plugin knows about each model family.

Encoding, context window, output limit, tool overhead, price, and whether (and from
which snapshot on) the family takes structured outputs: every other module reads
them here (`prices.py`, the extraction's `auto` mode, the simulator's model list).

Model names are matched by prefix, longest first, so dated snapshots
(`gpt-4o-mini-2024-07-18`) resolve to their family (`gpt-4o-mini`).

Example:
    >>> from prefect_openai_chat.tokens.models import model_info
    >>> model_info("gpt-4o-mini-2024-07-18").encoding
    'o200k_base'
    >>> snapshot_date("gpt-4o-2024-08-06"), snapshot_date("gpt-4o")
    ((2024, 8, 6), None)
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass

logger = logging.getLogger(__name__)

PRICES_CHECKED_ON = "2025-08-07"


@dataclass(frozen=True)
class Price:
    """USD per million input, cached-input and output tokens."""

    input: float
    cached_input: float
    output: float


@dataclass(frozen=True)
class ModelInfo:
    """Counting constants, limits and price of one model family."""

    family: str
    encoding: str
    context_window: int
    max_output_tokens: int
    tool_function_init: int  # tokens that open each function definition
    known: bool = True
    price: Price | None = None
    # None: no structured outputs; "": every name of the family; "YYYY-MM-DD": the
    # family's own alias and snapshots dated from then on.
    structured_outputs_from: str | None = None


_O200K = "o200k_base"
_CL100K = "cl100k_base"
_ALL = ""  # structured outputs on every name of the family


def _row(
    encoding: str,
    window: int,
    max_out: int,
    func_init: int,
    price: Price,
    structured: str | None = None,
) -> tuple[str, int, int, int, Price, str | None]:
    return encoding, window, max_out, func_init, price, structured


# family prefix -> (encoding, context window, max output, tool function init, price, structured)
_FAMILIES: dict[str, tuple[str, int, int, int, Price, str | None]] = {
    "gpt-3.5-turbo": _row(_CL100K, 16_385, 4_096, 10, Price(0.50, 0.50, 1.50)),
    "gpt-4": _row(_CL100K, 8_192, 8_192, 10, Price(30.0, 30.0, 60.0)),
    "gpt-4-32k": _row(_CL100K, 32_768, 8_192, 10, Price(60.0, 60.0, 120.0)),
    "gpt-4-turbo": _row(_CL100K, 128_000, 4_096, 10, Price(10.0, 10.0, 30.0)),
    "gpt-4-1106": _row(_CL100K, 128_000, 4_096, 10, Price(10.0, 10.0, 30.0)),
    "gpt-4-0125": _row(_CL100K, 128_000, 4_096, 10, Price(10.0, 10.0, 30.0)),
    "gpt-4o": _row(_O200K, 128_000, 16_384, 7, Price(2.50, 1.25, 10.0), "2024-08-06"),
    "gpt-4o-mini": _row(_O200K, 128_000, 16_384, 7, Price(0.15, 0.075, 0.60), _ALL),
    "chatgpt-4o": _row(_O200K, 128_000, 16_384, 7, Price(5.0, 5.0, 15.0)),
    "gpt-4.1": _row(_O200K, 1_047_576, 32_768, 7, Price(2.00, 0.50, 8.00), _ALL),
    "gpt-4.1-mini": _row(_O200K, 1_047_576, 32_768, 7, Price(0.40, 0.10, 1.60), _ALL),
    "gpt-4.1-nano": _row(_O200K, 1_047_576, 32_768, 7, Price(0.10, 0.025, 0.40), _ALL),
    "gpt-4.5": _row(_O200K, 128_000, 16_384, 7, Price(75.0, 37.5, 150.0)),
    "o1": _row(_O200K, 200_000, 100_000, 7, Price(15.0, 7.50, 60.0), _ALL),
    "o1-preview": _row(_O200K, 128_000, 32_768, 7, Price(15.0, 7.50, 60.0)),
    "o1-mini": _row(_O200K, 128_000, 65_536, 7, Price(1.10, 0.55, 4.40)),
    "o3": _row(_O200K, 200_000, 100_000, 7, Price(2.00, 0.50, 8.00), _ALL),
    "o3-mini": _row(_O200K, 200_000, 100_000, 7, Price(1.10, 0.55, 4.40), _ALL),
    "o4-mini": _row(_O200K, 200_000, 100_000, 7, Price(1.10, 0.275, 4.40), _ALL),
    "gpt-5": _row(_O200K, 400_000, 128_000, 7, Price(1.25, 0.125, 10.0), _ALL),
    "gpt-5-mini": _row(_O200K, 400_000, 128_000, 7, Price(0.25, 0.025, 2.00), _ALL),
    "gpt-5-nano": _row(_O200K, 400_000, 128_000, 7, Price(0.05, 0.005, 0.40), _ALL),
}
FAMILIES: tuple[str, ...] = tuple(_FAMILIES)
_PREFIXES = sorted(_FAMILIES, key=len, reverse=True)
_UNKNOWN = ModelInfo("unknown", _O200K, 128_000, 16_384, 7, known=False)
# A dated snapshot: "-2024-08-06", or the older "-0613" / "-1106" style.
_SNAPSHOT = re.compile(r"-(?:(\d{4})-(\d{2})-(\d{2})|(\d{4}))$")


@functools.lru_cache(maxsize=1024)
def _family_of(model: str) -> str | None:
    name = model.split("/")[-1].lower()  # "openai/gpt-4o" as some gateways spell it
    for prefix in _PREFIXES:
        if name == prefix or name.startswith(prefix + "-") or name.startswith(prefix + "."):
            # "gpt-4-turbo" must not be read as "gpt-4" + "-turbo": longest prefix wins.
            return prefix
    return None


def family_of(model: str) -> str | None:
    """The family `model` belongs to, or None when the table does not know it.

    Example:
        >>> family_of("openai/gpt-4o-mini-2024-07-18"), family_of("llama3")
        ('gpt-4o-mini', None)
    """
    return _family_of(model)


@functools.lru_cache(maxsize=1024)  # bounded: model names may come from data
def model_info(model: str) -> ModelInfo:
    """Return the family facts for `model`; unknown models get `o200k_base` and one warning."""
    family = _family_of(model)
    if family is None:
        logger.warning(
            "model %r is not in the plugin's model table; counting tokens with o200k_base"
            " and assuming a 128k context window",
            model,
        )
        return _UNKNOWN
    encoding, window, max_out, func_init, price, structured = _FAMILIES[family]
    return ModelInfo(
        family,
        encoding,
        window,
        max_out,
        func_init,
        price=price,
        structured_outputs_from=structured,
    )


def family_prices() -> dict[str, Price]:
    """The table's price of every family, by family name."""
    return {family: row[4] for family, row in _FAMILIES.items()}


def snapshot_date(model: str) -> tuple[int, ...] | None:
    """The date of a dated snapshot as `(year, month, day)` (`(mmdd,)` for `-0613` names)."""
    match = _SNAPSHOT.search(model)
    if match is None:
        return None
    if match.group(4) is not None:
        return (int(match.group(4)),)
    return tuple(int(g) for g in match.groups()[:3])


def is_pinned_snapshot(model: str) -> bool:
    """True for a dated snapshot (`gpt-4o-2024-08-06`), False for a floating alias."""
    return snapshot_date(model) is not None


def supports_structured_outputs(model: str) -> bool:
    """True when `model` accepts `response_format={"type": "json_schema", ...}`.

    Example:
        >>> supports_structured_outputs("gpt-4o-2024-05-13"), supports_structured_outputs("gpt-4.1")
        (False, True)
    """
    family = _family_of(model)
    if family is None:
        return False
    since = _FAMILIES[family][5]
    if since is None:
        return False
    if since == _ALL:
        return True
    name = model.split("/")[-1].lower()
    if name == family:
        return True  # the alias; other undated variants (audio, realtime) are not for this
    date = snapshot_date(name)
    return date is not None and len(date) == 3 and date >= tuple(map(int, since.split("-")))
