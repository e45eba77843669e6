"""Phrases a reader picks out of a customer's text: ids, product names, the writer, a summary.

Plain, deterministic heuristics over one text (no model): an id is an upper-case
prefix with digits (`ORD-12345`, `1Z1234567890`); a product is a capitalised phrase
after `my`/`the`/`a`, stretched to a product noun (`the Brew Mini espresso machine`);
the writer is who introduces themselves or signs; a summary is the first sentence
that says something, cut to about twelve words.

Example:
    >>> text = "Hi,\\n\\nMy Halo baby monitor reboots. Order ORD-12345.\\n\\nThanks,\\nMaria Lopez"
    >>> products(text), writer(text, []), ids(text), summary(text)
    (['Halo baby monitor'], 'Maria Lopez', ['ORD-12345'], 'My Halo baby monitor reboots.')
"""

from __future__ import annotations

import re

SUMMARY_WORDS = 12


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_ID = re.compile(
    r"(?<![\w-])(?:[A-Z]{1,6}[-#]?\d[\dA-Z-]*|\d+[A-Z][A-Z\d]{3,}|\d{3,}-\d{3,}|\d{6,})(?![\w-])"
)
_WORD = re.compile(r"\w+(?:[.'+-]\w+)*")
_CAPITALISED = re.compile(r"[A-Z](?<![\w.'+-][A-Z])\w*(?:[.'+-]\w+)*")
_LAST_WORD = re.compile(r"\w+(?:[.'+-]\w+)*$")
_DETERMINERS = _set("my the a an our your his her their this new mi")
_FILLER_STOP = _DETERMINERS | _set(
    """on in at to for of with and or but from by is was are were be been it its that which who
    as so if not no just still again now then keeps kept"""
)
# Generic words for things people buy or use; a product phrase stretches to one of them.
PRODUCT_NOUNS = _set(
    """app application dashboard plan subscription membership warranty license licence software
    service headphones earbuds headset speaker speakers soundbar kettle backpack bag lamp light
    bulb fryer scooter e-scooter bike e-bike monitor screen display machine smartwatch watch
    vacuum router modem camera phone smartphone laptop notebook tablet printer charger cable
    adapter console controller keyboard mouse tv television blender toaster mixer heater fan
    thermostat doorbell lock mattress chair desk sofa table shoes jacket card player drone oven
    fridge dishwasher microwave sensor hub tracker ring glasses lens bottle mug grinder cooker
    purifier humidifier dryer washer iron shaver toothbrush stroller seat tent stove"""
)
_NOT_PRODUCT = _set(
    """I Hi Hello Hey Dear Thanks Thank Please Regards Best Cheers Kind Order Subject Name Email
    Message Topic Sent iPhone Android Chrome Firefox Safari Windows macOS iOS Linux Pay URGENT
    Re Fwd The This That It My We You Your Our Any Would Could Can Since After Before On In
    Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May
    June July August September October November December DHL UPS FedEx USPS DPD GLS TNT Royal
    Hermes Evri Yodel"""
)
_PLAIN_PRODUCT = re.compile(
    r"\b(?i:my|the|our)\s+((?:[a-z]+\s+){0,2}?(?:"
    + "|".join(sorted(PRODUCT_NOUNS | {"account", "parcel", "package"}, key=len, reverse=True))
    + r"))\b"
)
_ORDER_REF = re.compile(r"\b(?i:order)\s+#?[A-Z]*-?\d{3,}\b")
_SIGN_OFF = re.compile(
    r"^(?:thanks|thank you|many thanks|best|best regards|kind regards|regards|cheers|"
    r"sincerely|yours|warm regards|br|viele grüße|saludos|-+|--)[\s,.!]*$",
    re.IGNORECASE,
)
_INTRO = re.compile(
    r"\b(?i:my name is|this is|i am|i'm|name\s*:|soy|ich bin)\s+"
    r"([A-Z][a-z'\u2019]+(?:[ -][A-Z][a-z'\u2019-]+){0,2})"
)
_HERE = re.compile(r"^([A-Za-z][a-z]+) here\b", re.MULTILINE)
_PERSON = re.compile(r"^[A-Z][a-z'\u2019-]+(?: [A-Z][a-z'\u2019-]+){0,2}$")
_LABEL_LINE = re.compile(r"^[A-Za-z][\w ]{0,24}:(?:\s+\S.{0,60})?$")
_GREETING = re.compile(
    r"^(?:hi|hello|hey|dear|good (?:morning|afternoon|evening)|greetings|hola|hallo|grüezi)\b"
    r"[^.!?\n]{0,30}$",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_HELLO = re.compile(
    r"^(?:hi|hello|hey|hola|hallo|grüezi|good (?:morning|afternoon|evening)|dear \w+)\b[,!]?\s*",
    re.IGNORECASE,
)
_TRAILING = _set(
    """a an the and or but to of in on at for with that which i my is was every since from by as
    after before when if because so than then into about like your our its this these"""
)
_SELF_INTRO = re.compile(
    r"^(?:my name is|this is|i am|i'm|i have been a customer|(?:\w+) here\b)", re.IGNORECASE
)


def ids(text: str) -> list[str]:
    """Id-like tokens in order: `ORD-12345`, `T-00042`, `E-9493`, `1Z1234567890`."""
    return _ID.findall(text)


def id_spans(text: str) -> list[tuple[str, int]]:
    """`ids` with where each starts."""
    return [(m.group(0), m.start()) for m in _ID.finditer(text)]


def product(text: str, subject: str | None = None) -> str | None:
    """The product the text is about: a named product, else `my account`-like, else the subject."""
    named = products(text)
    if named:
        return named[0]
    m = _PLAIN_PRODUCT.search(text)
    if m:
        return m.group(1)
    m = _ORDER_REF.search(text)
    if m:
        return m.group(0)
    return subject or summary(text, 4, capitalize=False)


def products(text: str) -> list[str]:
    """Named products in order of appearance, e.g. `Aurora X2 headphones`, `Kettle Pro 1.7L`."""
    found: list[str] = []
    for m in _CAPITALISED.finditer(text):
        word, start = m.group(0), m.start()
        if not _can_start(word):
            continue
        before = _word_before(text, start)
        if before is not None and _product_start(before):
            continue  # inside a run that started earlier
        end, noun, count = _phrase_end(text, m.end(), word)
        if count == 1 and _is_noun(word):
            continue  # a bare generic word: "App crashes", "Subscription charge"
        if noun or (before is not None and before.lower() in _DETERMINERS):
            found.append(text[start:end])
    return found


def _can_start(word: str) -> bool:
    if word in _NOT_PRODUCT or _ID.fullmatch(word):
        return False
    return not (word.isupper() and len(word) <= 4)  # USD, VAT, DPD-like codes


def _product_start(word: str) -> bool:
    return (word[0].isupper() or word[0].isdigit()) and word not in _NOT_PRODUCT


def _is_noun(word: str) -> bool:
    low = word.lower()
    return low in PRODUCT_NOUNS or low.rsplit("-", 1)[-1] in PRODUCT_NOUNS


def _word_before(text: str, start: int) -> str | None:
    """The word just before `start` when one space separates them."""
    if start < 2 or text[start - 1] != " ":
        return None
    m = _LAST_WORD.search(text, max(0, start - 40), start - 1)
    return m.group(0) if m else None


def _phrase_end(text: str, pos: int, first: str) -> tuple[int, bool, int]:
    """End of the phrase (the capitalised run, or up to product nouns two words on),
    whether it ends in a product noun, and its number of words."""
    run_end, count, run_count, fillers, noun_end = pos, 1, 1, 0, -1
    for _ in range(6):
        m = _WORD.match(text, pos + 1) if text.startswith(" ", pos) else None
        if m is None:
            break
        word, pos, count = m.group(0), m.end(), count + 1
        if _is_noun(word):
            noun_end = pos  # "desk lamp": keep going while nouns follow
            run_count = count
            continue
        if noun_end >= 0:
            break
        if _product_start(word) and fillers == 0:
            run_end, run_count = pos, count
        elif word.isalpha() and word.islower() and word not in _FILLER_STOP and fillers < 2:
            fillers += 1
        else:
            break
    if noun_end >= 0:
        return noun_end, True, run_count
    return run_end, _is_noun(first), run_count


def writer(text: str, emails: list[str]) -> str | None:
    """Who wrote the text: an introduction, a signature, or the name in the email address."""
    found = _introduced(text) or _signature(text)
    from_email = _name_from_email(emails[0]) if emails else None
    if found and " " not in found and from_email and from_email.split()[0] == found:
        return from_email
    return found or from_email


def _introduced(text: str) -> str | None:
    m = _INTRO.search(text)
    if m:
        return m.group(1)
    m = _HERE.search(text)
    return m.group(1).capitalize() if m else None


def _signature(text: str) -> str | None:
    lines = [line.strip() for line in text.splitlines()]
    for index, line in enumerate(lines):
        if _SIGN_OFF.match(line) and index + 1 < len(lines):
            candidate = lines[index + 1]
            if _PERSON.match(candidate) and candidate.split()[0] not in _NOT_PRODUCT:
                return candidate
    return None


def _name_from_email(email: str) -> str | None:
    parts = [p for p in re.split(r"[._-]+", re.sub(r"\d+", "", email.split("@")[0])) if p]
    if len(parts) == 2 and all(p.isalpha() and len(p) > 1 for p in parts):
        return " ".join(p.capitalize() for p in parts)
    return None


def summary(text: str, words: int = SUMMARY_WORDS, *, capitalize: bool = True) -> str | None:
    """The first sentence that says something, cut to `words` words (None for an empty text)."""
    fallback: str | None = None
    for line in _body_lines(text):
        for sentence in _SENTENCE_END.split(line):
            sentence = _HELLO.sub("", sentence.strip())
            tokens = sentence.split()
            if not tokens:
                continue
            fallback = fallback or sentence
            if len(tokens) < 4 or _SELF_INTRO.match(sentence) or "@" in sentence:
                continue
            return _cut(tokens, words, capitalize)
    return _cut(fallback.split(), words, capitalize) if fallback else None


def _cut(tokens: list[str], words: int, capitalize: bool) -> str:
    if len(tokens) > words:
        tokens = tokens[:words]
        while len(tokens) > 3 and tokens[-1].lower().strip(",;:-") in _TRAILING:
            tokens.pop()
        tokens[-1] = tokens[-1].rstrip(",;:-") + "..."
    if capitalize:
        tokens[0] = tokens[0][0].upper() + tokens[0][1:]
    return " ".join(tokens)


def _body_lines(text: str) -> list[str]:
    """Lines of the message itself: no labels, greetings, quotes or what follows a sign-off."""
    out: list[str] = []
    subject: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if _SIGN_OFF.match(line) and out:
            break
        if not line or line.startswith(">") or _GREETING.match(line):
            continue
        if _LABEL_LINE.match(line):
            if line.lower().startswith("subject:"):
                subject.append(line.split(":", 1)[1].strip())
            continue
        out.append(line)
    return out or subject
