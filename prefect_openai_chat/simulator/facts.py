"""Find field values in the user's text: labelled values, names, emails, dates, amounts, ids,
products, the writer, a summary, quoted errors and versions (see `phrases` for the heuristics).

Example:
    >>> from prefect_openai_chat.simulator.facts import TextFacts
    >>> facts = TextFacts("Ada Lovelace <ada@example.org>, total $1,234.50, 2024-03-01")
    >>> facts.emails, facts.dates, facts.amounts[0]
    (['ada@example.org'], ['2024-03-01'], (1234.5, 'USD'))
"""

from __future__ import annotations

import functools
import re

from prefect_openai_chat.simulator import phrases

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_ISO_DATETIME = re.compile(
    r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
)
_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_WORD_DATE = re.compile(
    r"\b(?:(\d{1,2})\s+("
    + "|".join(_MONTHS)
    + r")\s+(\d{4})|("
    + "|".join(_MONTHS)
    + r")\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4}))\b",
    re.IGNORECASE,
)
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_CODES = "USD|EUR|GBP|CHF|JPY|CAD|AUD"
_AMOUNT = re.compile(
    rf"(?P<sym>[$€£])\s?(?P<a>{_NUM})|(?P<b>{_NUM})\s?(?P<code>{_CODES}|€|£)(?![A-Za-z])"
    rf"|(?<![A-Za-z])(?P<pre>{_CODES})\s?(?P<c>{_NUM})(?![\d.,]*\d)",
)
_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP"}
_QUOTED = re.compile(r'"([^"\n]{3,300})"|“([^”\n]{3,300})”')
_VERSION = re.compile(r"(?<![\w.])v?(\d+\.\d+(?:\.\d+)*)(?!\w|\.\d)")
_VERSION_CUE = re.compile(r"(?:version|firmware|release|build|update to|v)\s*$", re.IGNORECASE)
CARRIERS = (
    "DHL", "UPS", "FedEx", "USPS", "DPD", "GLS", "TNT", "Royal Mail", "Hermes", "Evri",
    "Yodel", "Canada Post", "La Poste", "PostNL", "Australia Post", "Amazon Logistics",
)  # fmt: skip
_CARRIER = re.compile(r"(?<![\w-])(" + "|".join(re.escape(c) for c in CARRIERS) + r")(?![\w-])")
_NAME = re.compile(r"\b([A-Z][a-z]+(?:[ -][A-Z][a-z]+){1,2})\b")
_NOT_NAMES = {m.capitalize() for m in _MONTHS} | set(
    [
        "The",
        "This",
        "That",
        "These",
        "Those",
        "Invoice",
        "Order",
        "Dear",
        "Hello",
        "Hi",
        "Thanks",
        "Thank",
        "Please",
        "Total",
        "Customer",
        "Date",
        "Email",
        "Amount",
        "From",
        "To",
        "Subject",
        "Regards",
        "Best",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Extract",
        "Return",
        "Name",
        "Note",
        "Ticket",
        "Street",
        "Road",
        "Avenue",
        "Inc",
        "Ltd",
        "Corp",
    ]
)


class TextFacts:
    """Values found in one text, each list in order of appearance; computed lazily."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._lower = text.lower()

    @functools.cached_property
    def emails(self) -> list[str]:
        """Email addresses."""
        return _EMAIL.findall(self.text)

    @functools.cached_property
    def datetimes(self) -> list[str]:
        """ISO date-times, as written."""
        return [m.group(0).replace(" ", "T") for m in _ISO_DATETIME.finditer(self.text)]

    @functools.cached_property
    def dates(self) -> list[str]:
        """Dates as ISO `YYYY-MM-DD`, from ISO or `March 3, 2024` / `3 March 2024` forms."""
        found: list[tuple[int, str]] = [
            (m.start(), m.group(0)) for m in _ISO_DATE.finditer(self.text)
        ]
        for m in _WORD_DATE.finditer(self.text):
            if m.group(1):
                day, month, year = m.group(1), m.group(2), m.group(3)
            else:
                month, day, year = m.group(4), m.group(5), m.group(6)
            iso = f"{year}-{_MONTHS.index(month.lower()) + 1:02d}-{int(day):02d}"
            found.append((m.start(), iso))
        return [iso for _, iso in sorted(found)]

    @functools.cached_property
    def amounts(self) -> list[tuple[float, str]]:
        """Money amounts with their currency code: `$1,234.50` -> (1234.5, 'USD')."""
        out: list[tuple[float, str]] = []
        for m in _AMOUNT.finditer(self.text):
            if m.group("sym"):
                out.append((_to_float(m.group("a")), _SYMBOLS[m.group("sym")]))
            elif m.group("pre"):
                out.append((_to_float(m.group("c")), m.group("pre")))
            else:
                code = m.group("code")
                out.append((_to_float(m.group("b")), _SYMBOLS.get(code, code)))
        return out

    @functools.cached_property
    def names(self) -> list[str]:
        """Capitalised word runs that look like person names."""
        out = []
        for m in _NAME.finditer(self.text):
            words = re.split(r"[ -]", m.group(1))
            if not any(w in _NOT_NAMES for w in words):
                out.append(m.group(1))
        return out

    def labelled(self, key: str, *, strict: bool = False) -> str | None:
        """The text after `key:`, `key is` or `key =`: `Customer name: Ada` for `customer_name`.

        `strict` takes only `key:` and `key =` (not `the product is broken`).
        """
        label = _label_pattern(key)
        if not label or _first_word(key) not in self._lower:
            return None
        glue = r"[:=]" if strict else r"(?:is|was|:|=|-)"
        m = re.search(label + r"\s*" + glue + r"\s*([^\n,;|]+)", self.text, re.IGNORECASE)
        if m:
            return m.group(1).strip().strip("\"'").rstrip(".").strip() or None
        return None

    def labelled_number(self, key: str) -> float | None:
        """The first number within a few characters after the label of `key`."""
        label = _label_pattern(key)
        if not label or _first_word(key) not in self._lower:
            return None
        m = re.search(label + r"[^\d\n]{0,24}?(-?(?:" + _NUM + "))", self.text, re.IGNORECASE)
        return _to_float(m.group(1)) if m else None

    @functools.cached_property
    def id_spans(self) -> list[tuple[str, int]]:
        """Id-like tokens (`ORD-12345`, `T-00042`, `1Z1234567890`) and where they start."""
        return phrases.id_spans(self.text)

    @functools.cached_property
    def products(self) -> list[str]:
        """Named products, in order of appearance."""
        return phrases.products(self.text)

    @functools.cached_property
    def subject(self) -> str | None:
        """The `Subject:` line's text, if any."""
        m = re.search(r"^subject:[ \t]*(\S[^\n]*)$", self.text, re.IGNORECASE | re.MULTILINE)
        return m.group(1).strip() if m else None

    @functools.cached_property
    def product(self) -> str | None:
        """The product the text is about, as written (`Brew Mini espresso machine`)."""
        return phrases.product(self.text, self.subject)

    @functools.cached_property
    def writer(self) -> str | None:
        """Who wrote the text (an introduction, a signature, the email's name)."""
        return phrases.writer(self.text, self.emails)

    @functools.cached_property
    def summary(self) -> str | None:
        """The first sentence that says something, about twelve words."""
        return phrases.summary(self.text)

    @functools.cached_property
    def quotes(self) -> list[str]:
        """Text in double quotes, such as a quoted error message."""
        return [a or b for a, b in _QUOTED.findall(self.text)]

    @functools.cached_property
    def versions(self) -> list[str]:
        """Version numbers (`4.2.1`; `1.5` only after a word like `version`), cued ones first."""
        cued, plain = [], []
        for m in _VERSION.finditer(self.text):
            if _VERSION_CUE.search(self.text, max(0, m.start() - 14), m.start()):
                cued.append(m.group(1))
            elif m.group(1).count(".") >= 2:
                plain.append(m.group(1))
        return cued + plain

    @functools.cached_property
    def carriers(self) -> list[str]:
        """Parcel carriers named in the text (DHL, UPS, ...)."""
        return _CARRIER.findall(self.text)

    def matches(self, pattern: str) -> list[str]:
        """Substrings matching a JSON-schema `pattern` (anchors dropped); [] if it is not regex."""
        compiled = _unanchored(pattern)
        return [m.group(0) for m in compiled.finditer(self.text)] if compiled else []

    def mentions(self, value: str) -> int:
        """Position of `value` as a word in the text (case-insensitive), -1 if absent."""
        m = re.search(r"(?<![\w-])" + re.escape(value.lower()) + r"(?![\w-])", self._lower)
        return m.start() if m else -1


@functools.lru_cache(maxsize=256)
def _unanchored(pattern: str) -> re.Pattern[str] | None:
    body = pattern[1:] if pattern.startswith("^") else pattern
    if body.endswith("$") and not body.endswith("\\$"):
        body = body[:-1]
    try:
        return re.compile(r"(?<![\w-])(?:" + body + r")(?![\w-])")
    except re.error:
        return None


@functools.lru_cache(maxsize=512)
def _label_words(key: str) -> tuple[str, ...]:
    return tuple(w for w in re.split(r"[_\W]+|(?<=[a-z])(?=[A-Z])", key) if w)


def _first_word(key: str) -> str:
    """The label's first word, lower-cased: a cheap test before the regex."""
    words = _label_words(key)
    return words[0].lower() if words else ""


@functools.lru_cache(maxsize=512)
def _label_pattern(key: str) -> str:
    words = _label_words(key)
    if not words:
        return ""
    return r"\b" + r"[\s_-]*".join(re.escape(w) for w in words) + r"\b"


def _to_float(text: str) -> float:
    return float(text.replace(",", ""))
