"""Plausible, deterministic prose of an exact token length, and cutting text at a token count.

Example:
    >>> import random
    >>> from prefect_openai_chat.tokens import count_text_tokens
    >>> text = prose(random.Random(1), 25, "gpt-4o-mini")
    >>> count_text_tokens(text, "gpt-4o-mini")
    25
"""

from __future__ import annotations

import random
import re

from prefect_openai_chat.tokens import get_encoding, model_info

_CHUNK = re.compile(r"\s*[^\s]{1,8}|\s+")
_WORDS = [
    "the",
    "pipeline",
    "record",
    "model",
    "answer",
    "data",
    "value",
    "result",
    "system",
    "process",
    "request",
    "field",
    "summary",
    "report",
    "customer",
    "order",
    "invoice",
    "account",
    "team",
    "project",
    "update",
    "review",
    "quality",
    "batch",
    "schedule",
    "service",
    "network",
    "report",
    "memory",
    "source",
    "target",
    "window",
    "signal",
    "update",
    "budget",
    "client",
    "policy",
    "a",
    "an",
    "of",
    "to",
    "in",
    "for",
    "with",
    "on",
    "by",
    "from",
    "and",
    "or",
    "but",
    "as",
    "at",
    "that",
    "this",
    "it",
    "is",
    "was",
    "are",
    "be",
    "has",
    "have",
    "will",
    "can",
    "should",
    "may",
    "each",
    "every",
    "new",
    "first",
    "last",
    "next",
    "small",
    "large",
    "clear",
    "simple",
    "stable",
    "quick",
    "careful",
    "useful",
    "nightly",
    "daily",
    "weekly",
    "total",
    "final",
    "current",
    "recent",
    "common",
    "good",
    "better",
    "best",
    "runs",
    "checks",
    "returns",
    "holds",
    "keeps",
    "shows",
    "sends",
    "reads",
    "writes",
    "finds",
    "uses",
    "needs",
    "gives",
    "takes",
    "makes",
    "moves",
    "loads",
    "stores",
    "builds",
    "tests",
    "counts",
    "tracks",
]


def prose(rng: random.Random, tokens: int, model: str) -> str:
    """Sentences of exactly `tokens` tokens for `model`'s encoding (at least 1)."""
    tokens = max(1, tokens)
    parts: list[str] = []
    approx = 0
    while approx < tokens + 8:
        length = rng.randint(6, 14)
        words = [rng.choice(_WORDS) for _ in range(length)]
        words[0] = words[0].capitalize()
        parts.append(" ".join(words) + ".")
        approx += length + 1
    text = " ".join(parts)
    return cut_tokens(text, tokens, model)[0]


def cut_tokens(text: str, limit: int, model: str) -> tuple[str, int, bool]:
    """`text` cut to at most `limit` tokens: (text, token count, whether it was cut)."""
    encoding = get_encoding(model_info(model).encoding)
    ids = encoding.encode_ordinary(text)
    if len(ids) <= limit:
        return text, len(ids), False
    return encoding.decode(ids[:limit]), limit, True


MAX_FRAMES = 4096  # longer texts (only the tests' megabyte answers) share frames


def chunks(text: str) -> list[str]:
    """Split `text` into stream deltas of about one token each (a word with its leading
    space); a text of more than `MAX_FRAMES` such pieces in at most `MAX_FRAMES` deltas of
    several pieces each.

    Example:
        >>> chunks("Hello there, world")
        ['Hello', ' there,', ' world']
        >>> len(chunks("word " * 10_000)) <= MAX_FRAMES
        True
    """
    pieces: list[str] = _CHUNK.findall(text)
    if len(pieces) <= MAX_FRAMES:
        return pieces
    step = -(-len(pieces) // MAX_FRAMES)
    return ["".join(pieces[i : i + step]) for i in range(0, len(pieces), step)]
