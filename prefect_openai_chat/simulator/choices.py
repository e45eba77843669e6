"""Pick an enum value the way a reader would: by the keywords of each option found in the text.

An option's keywords are its own words (`feature_request` -> feature, request), the
words the field's description gives it (`billing (charges, refunds, invoices)`,
`high for a blocked customer`), and a built-in list for common option names
(`urgent`: asap, immediately, ...). The option with the most keywords in the text
wins, the earliest on a tie; with none, the option the description calls the
default (`medium by default`), or a catch-all such as `other`, or None.

Example:
    >>> pick(["billing", "bug", "shipping"], "", "I was charged twice, please refund me")
    ('billing', 4)
    >>> pick(["low", "medium", "high"], "medium by default", "hello")
    ('medium', 0)
"""

from __future__ import annotations

import functools
import re
from typing import Any


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_STOP = _set(
    """a an the and or but for if of to in on at by with from as is are be been it its this that
    these those something anything everything else other others default customer customers
    ticket tickets user users wants want does do not no when what which who how why any all
    some now one more most very there their they them you your we our us he she his her
    about into than then so such only just also e g eg i.e etc kind type"""
)
# Keywords for option names that many schemas use.
BUILTIN: dict[str, tuple[str, ...]] = {
    "billing": ("charge", "charged", "refund", "invoice", "payment", "paid", "price", "bill"),
    "payment": ("charge", "charged", "paid", "card", "payment"),
    "refund": ("refund", "money back", "reimburse", "charged twice", "return"),
    "bug": ("crash", "error", "broken", "not working", "fails", "failed", "reboot", "sync"),
    "technical": ("crash", "error", "broken", "not working", "fails", "failed", "reboot"),
    "shipping": ("delivery", "delivered", "arrive", "parcel", "package", "tracking", "shipped"),
    "delivery": ("delivery", "delivered", "arrive", "parcel", "package", "tracking", "shipped"),
    "account": ("account", "login", "log in", "password", "2fa", "locked", "sign in", "profile"),
    "feature_request": ("would be great", "would love", "feature", "please add", "any plans"),
    "urgent": ("urgent", "asap", "immediately", "dispute", "emergency", "right now"),
    "high": ("this week", "second time", "can't use", "cannot", "unable", "blocked", "at all"),
    "low": ("no rush", "whenever", "curious", "question", "wondering", "would be great"),
    "critical": ("nothing works", "data loss", "lost", "down", "all users", "cannot use"),
    "major": ("crash", "broken", "not working", "fails", "failed", "error"),
    "minor": ("cosmetic", "typo", "small", "minor", "weird noise", "not a big deal"),
    "positive": ("thank", "great", "love", "happy", "excellent", "awesome", "perfect"),
    "negative": ("angry", "disappointed", "terrible", "unacceptable", "worst", "frustrat"),
    "late": ("late", "not arrived", "still not", "supposed to arrive", "in transit", "delay"),
    "lost": ("lost", "missing", "never arrived", "no record"),
    "damaged": ("damaged", "broken", "crushed", "cracked", "smashed"),
    "wrong_item": ("wrong item", "instead", "not what i ordered", "received a"),
    "address_change": ("change the delivery address", "new address", "moved", "address"),
    "double_charge": ("charged twice", "two payments", "billed me 2x", "double"),
    "wrong_price": ("lower price", "price difference", "advertised", "overcharged"),
    "defective": ("broken", "defective", "damaged", "does not work", "doesn't work"),
    "not_received": ("never arrived", "not received", "not arrived", "still waiting"),
    "cancelled": ("cancelled", "canceled", "cancel"),
}
_DEFAULTS = ("other", "unknown", "general", "none", "neutral", "medium", "normal", "n/a")


def pick(options: list[Any], description: str, text: str) -> tuple[Any, int]:
    """The option the text supports best and its score; score 0 means a default or None."""
    lower = text.lower()
    names = [str(o) for o in options]
    best, best_score, best_at = None, 0, len(lower) + 1
    for option, keywords in _keywords(tuple(names), description):
        score, first = 0, len(lower) + 1
        for keyword, weight, whole in keywords:  # each keyword counts once
            at = _find_word(lower, keyword, whole)
            if at >= 0:
                score += weight
                first = min(first, at)
        if score > best_score or (score == best_score and score and first < best_at):
            best, best_score, best_at = option, score, first
    if best is None:
        best = _default(tuple(names), description)
    return (options[names.index(best)] if best is not None else None), best_score


def _find_word(lower: str, keyword: str, whole: bool) -> int:
    """Where `keyword` starts a word in `lower` (and ends one if `whole`), else -1."""
    at = lower.find(keyword)
    while at >= 0:
        if at == 0 or not _word_char(lower[at - 1]):
            end = at + len(keyword)
            if not whole or end == len(lower) or not _word_char(lower[end]):
                return at
        at = lower.find(keyword, at + 1)
    return -1


def _word_char(char: str) -> bool:
    return char.isalnum() or char in "_-"


Keywords = tuple[tuple[str, int, bool], ...]


@functools.lru_cache(maxsize=256)
def _keywords(options: tuple[str, ...], description: str) -> tuple[tuple[str, Keywords], ...]:
    """Per option: (keyword, weight, whole word) for its name, built-in and described words."""
    described = _described(options, description)
    out = []
    for option in options:
        parts = re.split(r"[_\s-]+", option.lower())
        said = {_stem(w) for w in parts if len(w) > 3} if len(parts) > 1 else set()
        said |= {_stem(w) for w in described.get(option, ())}
        known = {k.lower() for k in BUILTIN.get(option.lower(), ())}
        said -= known | _STOP
        keys = [(option.lower().replace("_", " "), 3, True)]
        keys += [(k, 2, False) for k in _shortest(known)]
        keys += [(k, 1, False) for k in _shortest(said) if not any(k.startswith(w) for w in known)]
        out.append((option, tuple(keys)))
    return tuple(out)


def _described(options: tuple[str, ...], description: str) -> dict[str, list[str]]:
    """Words the description gives each option: `opt (a, b)`, `opt for a b`, `opt if a`."""
    out: dict[str, list[str]] = {}
    for option in options:
        pattern = (
            rf"(?<![\w-]){re.escape(option)}(?![\w-])\s*"
            r"(?:\(([^)]*)\)|(?:for|if|when|means|=|:)\s+([^,;.()]*))"
        )
        for m in re.finditer(pattern, description, re.IGNORECASE):
            text = m.group(1) or m.group(2) or ""
            out.setdefault(option, []).extend(
                w for w in re.findall(r"[a-z][a-z']+", text.lower()) if w not in _STOP
            )
    return out


@functools.lru_cache(maxsize=256)
def _default(options: tuple[str, ...], description: str) -> str | None:
    for option in options:
        if re.search(
            rf"(?<![\w-]){re.escape(option)}(?![\w-])\s+(?:by default|otherwise|if unsure)",
            description,
            re.IGNORECASE,
        ):
            return option
    lowered = {o.lower(): o for o in options}
    return next((lowered[d] for d in _DEFAULTS if d in lowered), None)


def _shortest(keys: set[str]) -> list[str]:
    """`keys` without those that another key starts (`charge` covers `charged`)."""
    return sorted(k for k in keys if not any(k != o and k.startswith(o) for o in keys))


def _stem(word: str) -> str:
    """A prefix that also matches the word's other forms: refunds -> refun, charges -> charg."""
    return word if len(word) <= 4 else word[: max(4, len(word) - 2)]
