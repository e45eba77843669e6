"""Build an instance of a JSON schema from the user's text, and break one on purpose.

Handles what pydantic's `model_json_schema()` emits: nested objects, arrays,
`$ref`/`$defs`, `anyOf` with null, enums, `const`, integer/number/boolean/string,
formats date, date-time, email, uri and uuid, and min/max bounds.

Example:
    >>> import random
    >>> from prefect_openai_chat.simulator.facts import TextFacts
    >>> schema = {"type": "object", "properties": {"email": {"type": "string"}}}
    >>> SchemaFiller(schema, TextFacts("write to bob@example.com"), random.Random(1)).instance()
    {'email': 'bob@example.com'}
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from prefect_openai_chat.simulator import choices, fields
from prefect_openai_chat.simulator.facts import TextFacts

_MAX_DEPTH = 8
_AMOUNT_KEYS = ("amount", "total", "price", "cost", "sum", "balance", "subtotal", "fee", "paid")
_WORDS = [
    "alpha",
    "bravo",
    "cedar",
    "delta",
    "ember",
    "fable",
    "garnet",
    "harbor",
    "indigo",
    "juniper",
    "kestrel",
    "lumen",
]


class SchemaFiller:
    """Fills one schema; values found in `facts` first, deterministic placeholders after.

    A value the text does not give is a guess drawn from the record's text, the field's
    key and `seed`, not from `rng`: like a model at temperature 0, the simulated model
    guesses the same for the same record and field in every request (a re-ask of some
    fields, a whole re-ask, a request of another schema); `rng` only shapes lists.
    """

    def __init__(
        self, schema: dict[str, Any], facts: TextFacts, rng: random.Random, seed: int = 0
    ) -> None:
        self.root = schema
        self.facts = facts
        self.rng = rng
        self.seed = seed
        self._used: dict[str, int] = {}  # kind -> how many found values already handed out

    def instance(self) -> Any:
        """A valid instance of the root schema."""
        return self._value(self.root, "value", 0)

    # --- schema walking ---------------------------------------------------------------

    def resolve(self, schema: Any) -> dict[str, Any]:
        """Follow `$ref`s and merge `allOf` into one plain schema dict."""
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < _MAX_DEPTH:
            target: Any = self.root
            for part in str(schema["$ref"]).lstrip("#/").split("/"):
                target = target.get(part, {}) if isinstance(target, dict) and part else target
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **extra} if isinstance(target, dict) else extra
            seen += 1
        if not isinstance(schema, dict):
            return {}
        if "allOf" in schema:
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for raw_part in schema["allOf"]:
                for key, value in self.resolve(raw_part).items():
                    if key in ("properties",) and key in merged:
                        merged[key] = {**merged[key], **value}
                    elif key == "required" and key in merged:
                        merged[key] = list(dict.fromkeys([*merged[key], *value]))
                    else:
                        merged.setdefault(key, value)
            return merged
        return schema

    def _value(self, schema: Any, key: str, depth: int) -> Any:
        schema = self.resolve(schema)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return self._enum(schema, key)[0]
        branches = schema.get("anyOf") or schema.get("oneOf")
        kind = schema.get("type")
        if isinstance(kind, list):
            branches = [{**schema, "type": t} for t in kind]
        if branches:
            real = [b for b in (self.resolve(b) for b in branches) if b.get("type") != "null"]
            nullable = len(real) < len(branches)
            if not real:
                return None
            branch = real[0]
            if "description" in schema and "description" not in branch:
                branch = {**branch, "description": schema["description"]}
            if nullable and depth > 0 and branch.get("enum"):
                value, found = self._enum(branch, key)
                return value if found else None
            if nullable and depth > 0 and branch.get("type") not in ("object", "array", None):
                value, found = self._scalar(branch, key)
                return value if found else None
            return self._value(branch, key, depth)
        if depth >= _MAX_DEPTH:
            return {} if kind == "object" else [] if kind == "array" else None
        if kind == "object" or (kind is None and "properties" in schema):
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, key, depth)
        return self._scalar(schema, key)[0]

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        return {name: self._value(sub, name, depth + 1) for name, sub in properties.items()}

    def _array(self, schema: dict[str, Any], key: str, depth: int) -> list[Any]:
        items = self.resolve(schema.get("items") or {})
        low = int(schema.get("minItems", 1))
        high = int(schema.get("maxItems", max(low, 2)))
        if items.get("type") == "string" and "enum" not in items:
            found = self._found_list(items, key)
            need = int(schema.get("minItems", 0))
            if found is not None and (found or not need):
                return found[: max(need, min(high, len(found)))] + [
                    self._value(items, key, depth + 1) for _ in range(need - len(found))
                ]
        count = max(low, min(high, 1 + self.rng.randrange(2)))
        singular = key[:-1] if key.endswith("s") else key
        return [self._value(items, singular, depth + 1) for _ in range(count)]

    def _found_list(self, items: dict[str, Any], key: str) -> list[str] | None:
        if items.get("format") == "email":
            return list(self.facts.emails)
        if items.get("format") == "date":
            return list(self.facts.dates)
        return fields.list_for(self.facts, key)

    # --- scalars ------------------------------------------------------------------------

    def _enum(self, schema: dict[str, Any], key: str) -> tuple[Any, bool]:
        """The option the text supports (True), else a default or a draw (False)."""
        options = schema["enum"]
        if "currency" in key.lower() and self.facts.amounts:
            code = self.facts.amounts[0][1]
            if code in options:
                return code, True
        labelled = self.facts.labelled(key)
        if labelled:
            for option in options:
                if option is not None and str(option).lower() == labelled.lower():
                    return option, True
        real = [o for o in options if o is not None]
        if not real:
            return None, False
        option, score = choices.pick(real, str(schema.get("description", "")), self.facts.text)
        if score > 0:
            return option, True
        if option is not None:
            return option, False
        return real[self._guess(key).randrange(len(real))], False

    def _scalar(self, schema: dict[str, Any], key: str) -> tuple[Any, bool]:
        kind = schema.get("type", "string")
        low_key = key.lower()
        if kind == "boolean":
            text = (self.facts.labelled(key) or "").lower()
            if text.startswith(("yes", "true", "y")):
                return True, True
            if text.startswith(("no", "false", "n")):
                return False, True
            return self._guess(key).random() < 0.5, False
        if kind in ("integer", "number"):
            return self._number(schema, key, kind == "integer")
        fmt = schema.get("format")
        found: str | None = None
        guess = self._guess(key)
        if fmt == "email" or "email" in low_key:
            found = self._next("email", self.facts.emails)
            fallback = f"{low_key.split('_')[0] or 'user'}{guess.randrange(100)}@example.com"
        elif fmt == "date-time":
            found = self._next("datetime", self.facts.datetimes)
            if found is None and (date := self._next("date", self.facts.dates)):
                found = date + "T00:00:00Z"
            fallback = _date(guess) + "T09:30:00Z"
        elif fmt == "date" or "date" in low_key:
            found = self.facts.labelled(key) if fmt != "date" else None
            if found is None or not _looks_iso(found):
                found = self._next("date", self.facts.dates)
            fallback = _date(guess)
        elif fmt == "uuid":
            fallback = str(uuid.UUID(int=guess.getrandbits(128), version=4))
        elif fmt in ("uri", "url"):
            fallback = f"https://example.com/{low_key}/{guess.randrange(1000)}"
        elif "currency" in low_key:
            amounts = self.facts.amounts
            found = amounts[0][1] if amounts else None
            fallback = "USD"
        else:
            found = fields.string_for(self.facts, key, schema)
            fallback = f"{low_key.replace('_', ' ')} {guess.choice(_WORDS)}".strip()
        value = found if found is not None else fallback
        return _fit_length(value, schema), found is not None

    def _number(self, schema: dict[str, Any], key: str, integer: bool) -> tuple[Any, bool]:
        found: float | None = None
        if any(word in key.lower() for word in _AMOUNT_KEYS):
            found = self.facts.labelled_number(key)
            if found is None and self.facts.amounts:
                found = self.facts.amounts[
                    min(self._used.get("amount", 0), len(self.facts.amounts) - 1)
                ][0]
                self._used["amount"] = self._used.get("amount", 0) + 1
        else:
            found = self.facts.labelled_number(key)
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if found is not None and (low is None or found >= low) and (high is None or found <= high):
            return (round(found) if integer else found), True
        lo = float(low) + (1 if "exclusiveMinimum" in schema else 0) if low is not None else 1.0
        hi = (
            float(high) - (1 if "exclusiveMaximum" in schema else 0)
            if high is not None
            else lo + 99
        )
        value = lo + self._guess(key).random() * max(0.0, hi - lo)
        return (round(min(max(value, lo), hi)) if integer else round(value, 2)), False

    def _next(self, kind: str, values: list[str]) -> str | None:
        index = self._used.get(kind, 0)
        if not values:
            return None
        self._used[kind] = index + 1
        return values[min(index, len(values) - 1)]

    def _guess(self, key: str) -> random.Random:
        """The draws of a value the text does not give: the same for the same record and key."""
        return random.Random(f"{self.seed}\0{self.facts.text}\0{key}")


def _date(guess: random.Random) -> str:
    return f"2024-{1 + guess.randrange(12):02d}-{1 + guess.randrange(28):02d}"


def _looks_iso(text: str) -> bool:
    return len(text) >= 10 and text[4] == "-" and text[7] == "-" and text[:4].isdigit()


def _fit_length(value: str, schema: dict[str, Any]) -> str:
    low = int(schema.get("minLength", 0))
    high = schema.get("maxLength")
    if len(value) < low:
        value = value + "x" * (low - len(value))
    if high is not None and len(value) > int(high):
        value = value[: int(high)]
    return value
