"""Placeholders that stand in for content: a "lazy" answer is re-asked, never parsed.

`markers_in(text)` finds them anywhere in an answer's text (`// ... rest of code`,
`/* ... */`, `[truncated]`, `<rest of ...>`, `...` standing for values);
`placeholder_values(data)` finds the string values of parsed JSON that are one, or hold
one; `is_placeholder` says whether a whole value is one ("...", "etc.", "(rest omitted)").
Every check runs in linear time on any text: a model in a runaway writes long runs of
one character, and a pattern that backtracked over them stalled the night's event loop
(`tests/reliability/test_linear_patterns.py` times each pattern on such runs).

Example:
    >>> placeholder_values({"name": "Ada", "bio": "...", "tags": ["x", "etc."]})
    ['etc.', '...']
    >>> markers_in('{"code": "print(1) // ... rest of code"}')
    ['// ...']
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

_LAZY_TEXT = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"(?<![:/\w])//\s*(?:\.\.\.|…)",  # // ... rest of code
        r"/\*\s*(?:\.\.\.|…)",
        r"#\s*(?:\.\.\.|…)\s*(?:rest|remaining|more)",
        r"\[\s*(?:\.\.\.\s*)?truncated\s*(?:\.\.\.\s*)?\]",
        r"<\s*(?:rest|remainder|remaining)\s+of\b[^>]{0,80}>",
        r"[\[,:]\s*(?:\.\.\.|…)\s*[,\]}]",  # a bare ellipsis standing for values
    )
]
# No pattern here scans far ahead of where it starts (`[^>]{0,80}`, not `[^>]*`): a long
# line of near-misses would make it quadratic. Two need a word up to 80 characters
# after a head; `_NEAR` finds those without backtracking (see `_Near`).
# One pass over a string decides whether any pattern can match at all (most strings: no).
_ANY_LAZY = re.compile("|".join(f"(?:{p.pattern})" for p in _LAZY_TEXT), re.IGNORECASE)
# A whole value that stands for content, matched against the value stripped of white
# space (`is_placeholder`): with `^\s*` and `\s*$` around it and two more `\s*` in a row,
# the pattern took seconds for a value of 2,000 line ends and grew with their cube.
_PLACEHOLDER = re.compile(
    r"\.\.\.|…|etc\.?|and so on|\[\s*truncated\s*\]"
    r"|<[^>]{0,80}\b(?:rest|remaining)\b[^>]{0,80}>"
    r"|\(?\s*(?:(?:\.\.\.|…)\s*)?(?:rest|remaining) (?:of|omitted)\b.*",
    re.IGNORECASE,
)


def markers_in(text: str) -> list[str]:
    """The placeholders found anywhere in `text` ("// ... rest of code", "[truncated]")."""
    found = []
    if _ANY_LAZY.search(text):
        for pattern in _LAZY_TEXT:
            match = pattern.search(text)
            if match:
                found.append(match.group(0).strip())
    for near in _NEAR:
        marker = near.search(text)
        if marker:
            found.append(marker)
    return found


class _Near:
    """A head, then one of some words starting at most `reach` characters after it on its
    line: `(?:head)[^\\n]{0,80}(?:words)` without the regex's backtracking over those 80
    characters, which took seconds on a megabyte of near-misses (`... more ... more`)."""

    def __init__(self, head: str, words: str, stops: str = "\n", reach: int = 80) -> None:
        self.head = re.compile(head, re.IGNORECASE)
        self.words = re.compile(words, re.IGNORECASE)
        self.stops = re.compile(f"[{stops}]")
        self.reach = reach

    def search(self, text: str) -> str | None:
        """The first head-and-word found, from the head to the word's end, else None.

        One pass: heads, words and line ends are each found once, in order.
        """
        heads = self.head.finditer(text)
        first = next(heads, None)
        if first is None:  # most texts: no need to look for the words at all
            return None
        words, stops = self.words.finditer(text), self.stops.finditer(text)
        word, stop = next(words, None), next(stops, None)
        for head in itertools.chain([first], heads):
            after = head.end()
            word = _first_from(words, word, after)
            if word is None:
                return None
            if word.start() > after + self.reach:
                continue
            stop = _first_from(stops, stop, after)
            if stop is None or stop.start() >= word.start():
                return text[head.start() : word.end()].strip()
        return None


def _first_from(
    matches: Iterator[re.Match[str]], current: re.Match[str] | None, at: int
) -> re.Match[str] | None:
    """The first match starting at or after `at`: `current`, or a later one of `matches`."""
    while current is not None and current.start() < at:
        current = next(matches, None)
    return current


_NEAR = (
    _Near(r"(?<![:/\w])//\s", r"\b(?:rest|remaining|omitted|more|same as above)\b"),  # // rest
    _Near(  # ... (rest omitted here)
        r"(?:\.\.\.|…)\s*(?:\(\s*)?(?:rest|remaining|more|etc)\b",  # not `\s*\(?\s*`: quadratic
        r"omitted|here|follow|continues|above|below",
        stops='\n"',
    ),
)


def placeholder_values(data: Any, limit: int = 10_000) -> list[str]:
    """String values that stand in for content ("...", "etc.", "[truncated]")."""
    strings: list[str] = []
    stack = [data]
    seen = 0
    while stack and seen < limit:
        item = stack.pop()
        seen += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and item:
            strings.append(item)
    # One search over all the strings rules out most answers: what matches inside one
    # string matches in the joined text too (no pattern is anchored, and to a lookbehind
    # or a word boundary the line end reads like the string's edge).
    joined = "\n".join(strings)
    if _ANY_LAZY.search(joined) is None and not any(n.head.search(joined) for n in _NEAR):
        return [item[:60] for item in strings if is_placeholder(item)]
    return [item[:60] for item in strings if is_placeholder(item) or markers_in(item)]


def is_placeholder(text: str) -> bool:
    """Whether the whole of `text` stands for content: "...", "etc.", "(rest omitted)".

    Example:
        >>> is_placeholder("  [truncated] "), is_placeholder("\\n" * 100_000)
        (True, False)
    """
    return _PLACEHOLDER.fullmatch(text.strip()) is not None
