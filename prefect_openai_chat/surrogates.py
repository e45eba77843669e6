"""Lone surrogates: the one kind of character no UTF-8 file, database or request can hold.

A lone surrogate (U+D800-U+DFFF) is half of a UTF-16 pair. JSON may spell one
(`"\\ud83d"`, half an emoji) and Python's `json` reads it into a `str`, but encoding
that `str` as UTF-8 raises `UnicodeEncodeError`, in a sink, a ledger, a log record or
the next request. A model can write one: then the value is not storable
(`extraction.storable`), and every text the plugin keeps or sends back to the model
carries the escape (`\\ud83d`, six characters) instead of the character.

Example:
    >>> lone_surrogate("ok \\U0001F600"), lone_surrogate("half \\ud83d")
    (None, '\\\\ud83d')
    >>> escape_surrogates("half \\ud83d")
    'half \\\\ud83d'
"""

from __future__ import annotations

import re
from typing import TypeVar

S = TypeVar("S", str, str | None)

_LONE = re.compile("[\ud800-\udfff]")


def lone_surrogate(text: str) -> str | None:
    """The first lone surrogate in `text`, spelt as its escape (`\\ud83d`); None when none."""
    if text.isascii():
        return None
    found = _LONE.search(text)
    return None if found is None else _escape(found)


def escape_surrogates(text: S) -> S:
    """`text` with each lone surrogate replaced by its escape: safe to encode as UTF-8."""
    if text is None or text.isascii() or _LONE.search(text) is None:
        return text
    return _LONE.sub(_escape, text)


def _escape(found: re.Match[str]) -> str:
    return f"\\u{ord(found.group()):04x}"
