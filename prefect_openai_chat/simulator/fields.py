"""Which value from the text a string field gets, by its name, `pattern` and description.

`order_id` with `pattern: ^ORD-\\d{5}$` gets the text's `ORD-12345`; `tracking_number`
the id written near "tracking"; `product` the named product; `customer_name` the
writer; `summary`/`reason`/`description` the first sentence that says something;
`error_message` a quoted error; `app_version` a version; `carrier` a parcel carrier.
None when the text holds nothing for the field.

Example:
    >>> from prefect_openai_chat.simulator.facts import TextFacts
    >>> facts = TextFacts("My order ORD-48213 (the Pulse smartwatch) never came. Thanks, Ada")
    >>> string_for(facts, "order_id", {"pattern": "^ORD-\\\\d{5}$"})
    'ORD-48213'
    >>> string_for(facts, "product", {})
    'Pulse smartwatch'
"""

from __future__ import annotations

import functools
import re
from typing import Any

from prefect_openai_chat.simulator.facts import TextFacts


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_ID_WORDS = _set("id number no num nr code ref reference sku")
_NOT_ID = _set("phone telephone mobile fax zip postal postcode post iban vat")
_PRODUCT_WORDS = _set("product item device goods article merchandise")
_SUMMARY_WORDS = _set(
    """summary description reason explanation rationale issue complaint details gist synopsis
    abstract overview note notes comment comments request message body text problem question
    situation context"""
)
_TITLE_WORDS = _set("title subject headline topic")
_PERSON_WORDS = _set(
    "customer contact author sender requester requestor reporter person client signee"
)
_NOT_PERSON = _set(
    """product company file app device carrier plan brand org organization organisation business
    store shop vendor merchant street city country domain user host model project team item
    service bank event place location tool function field key table column"""
)
_STEPS = re.compile(r"\bsteps?\b[^:\n]{0,20}:\s*([^.\n]+)", re.IGNORECASE)


@functools.lru_cache(maxsize=512)
def words_of(key: str) -> tuple[str, ...]:
    """`orderId`, `order_id`, `Order ID` -> ('order', 'id')."""
    return tuple(w.lower() for w in re.split(r"[_\W]+|(?<=[a-z])(?=[A-Z])", key) if w)


def string_for(facts: TextFacts, key: str, schema: dict[str, Any]) -> str | None:
    """The text's value for string field `key`, or None (no format, enum or email here)."""
    words = set(words_of(key))
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        return _first_match(facts, key, pattern)
    if words & _ID_WORDS and not words & _NOT_ID:
        return _id_for(facts, key)
    if "version" in words:
        return facts.versions[0] if facts.versions else None
    if "error" in words or "quote" in words:
        return facts.quotes[0] if facts.quotes else None
    if words & {"carrier", "courier", "shipper"}:
        return facts.carriers[0] if facts.carriers else None
    if words & _PRODUCT_WORDS:
        return facts.labelled(key, strict=True) or facts.product
    if words & _TITLE_WORDS:
        return facts.subject or facts.summary
    if words & _SUMMARY_WORDS:
        return facts.summary
    if ("name" in words or words & _PERSON_WORDS) and not words & _NOT_PERSON:
        return facts.labelled(key, strict=True) or facts.writer or _first(facts.names)
    found = facts.labelled(key)
    if found is None and "name" in words:
        found = _first(facts.names)
    return found


def list_for(facts: TextFacts, key: str) -> list[str] | None:
    """Values for an array of strings named `key` (emails, dates, ids, products, steps).

    [] when the field is of a known kind and the text holds none; None for other fields.
    """
    words = set(words_of(key.rstrip("s")) + words_of(key))
    if "email" in words or "emails" in words:
        return list(facts.emails)
    if words & {"date", "dates"}:
        return list(facts.dates)
    if words & {"step", "steps"}:
        m = _STEPS.search(facts.text)
        return [s.strip() for s in re.split(r",|;| then ", m.group(1)) if s.strip()] if m else []
    if words & _PRODUCT_WORDS:
        return list(dict.fromkeys(facts.products))
    if words & _ID_WORDS and not words & _NOT_ID:
        return list(dict.fromkeys(_related_ids(facts, key)))
    return None


def _first(values: list[str]) -> str | None:
    return values[0] if values else None


def _first_match(facts: TextFacts, key: str, pattern: str) -> str | None:
    """The labelled value if it fits `pattern`, else the first match in the text."""
    found = facts.matches(pattern)
    if not found:
        return None
    labelled = facts.labelled(key, strict=True)
    return labelled if labelled in found else found[0]


def _id_for(facts: TextFacts, key: str) -> str | None:
    labelled = facts.labelled(key, strict=True)
    if labelled and any(c.isdigit() for c in labelled) and " " not in labelled:
        return labelled
    related = _related_ids(facts, key)
    return related[0] if related else None


def _related_ids(facts: TextFacts, key: str) -> list[str]:
    """Ids whose prefix names the field (`ORD-` for order) or that follow its word closely."""
    subject = [w for w in words_of(key) if w not in _ID_WORDS and w.rstrip("s") not in _ID_WORDS]
    if not subject:
        return [token for token, _ in facts.id_spans]
    lower = facts.text.lower()
    out = []
    for token, start in facts.id_spans:
        prefix = re.match(r"[A-Za-z]*", token).group(0).lower()  # type: ignore[union-attr]
        before = lower[max(0, start - 30) : start]
        for word in subject:
            named = bool(prefix) and word.startswith(prefix)
            if named or (not prefix and word[:5] in before):
                out.append(token)
                break
    return out
