"""What the plugin knows about each model family: encoding, tool overhead, context window.

Model names are matched by prefix, longest first, so dated snapshots
(`gpt-4o-mini-2024-07-18`) resolve to their family (`gpt-4o-mini`).

Example:
    >>> from prefect_openai_chat.tokens.models import model_info
    >>> model_info("gpt-4o-mini-2024-07-18").encoding
    'o200k_base'
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """Counting constants and limits of one model family."""

    family: str
    encoding: str
    context_window: int
    max_output_tokens: int
    tool_function_init: int  # tokens that open each function definition
    known: bool = True


_O200K = "o200k_base"
_CL100K = "cl100k_base"

# family prefix -> (encoding, context window, max output tokens, tool function init)
_FAMILIES: dict[str, tuple[str, int, int, int]] = {
    "gpt-3.5-turbo": (_CL100K, 16_385, 4_096, 10),
    "gpt-4": (_CL100K, 8_192, 8_192, 10),
    "gpt-4-32k": (_CL100K, 32_768, 8_192, 10),
    "gpt-4-turbo": (_CL100K, 128_000, 4_096, 10),
    "gpt-4-1106": (_CL100K, 128_000, 4_096, 10),
    "gpt-4-0125": (_CL100K, 128_000, 4_096, 10),
    "gpt-4o": (_O200K, 128_000, 16_384, 7),
    "gpt-4o-mini": (_O200K, 128_000, 16_384, 7),
    "chatgpt-4o": (_O200K, 128_000, 16_384, 7),
    "gpt-4.1": (_O200K, 1_047_576, 32_768, 7),
    "gpt-4.1-mini": (_O200K, 1_047_576, 32_768, 7),
    "gpt-4.1-nano": (_O200K, 1_047_576, 32_768, 7),
    "gpt-4.5": (_O200K, 128_000, 16_384, 7),
    "o1": (_O200K, 200_000, 100_000, 7),
    "o1-mini": (_O200K, 128_000, 65_536, 7),
    "o3": (_O200K, 200_000, 100_000, 7),
    "o3-mini": (_O200K, 200_000, 100_000, 7),
    "o4-mini": (_O200K, 200_000, 100_000, 7),
    "gpt-5": (_O200K, 400_000, 128_000, 7),
    "gpt-5-mini": (_O200K, 400_000, 128_000, 7),
    "gpt-5-nano": (_O200K, 400_000, 128_000, 7),
}
_PREFIXES = sorted(_FAMILIES, key=len, reverse=True)
_UNKNOWN = ModelInfo("unknown", _O200K, 128_000, 16_384, 7, known=False)
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")


@functools.lru_cache(maxsize=1024)
def _family_of(model: str) -> str | None:
    name = model.split("/")[-1].lower()  # "openai/gpt-4o" as some gateways spell it
    for prefix in _PREFIXES:
        if name == prefix or name.startswith(prefix + "-") or name.startswith(prefix + "."):
            # "gpt-4-turbo" must not be read as "gpt-4" + "-turbo": longest prefix wins.
            return prefix
    return None


@functools.cache
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
    encoding, window, max_out, func_init = _FAMILIES[family]
    return ModelInfo(family, encoding, window, max_out, func_init)


def is_pinned_snapshot(model: str) -> bool:
    """True for a dated snapshot (`gpt-4o-2024-08-06`), False for a floating alias."""
    return bool(_SNAPSHOT.search(model))
