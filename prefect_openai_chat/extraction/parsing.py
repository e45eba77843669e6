"""Turn a model's answer into JSON data, cheapest step first, and validate it.

1. `json.loads` on the text (or the forced tool call's arguments) as it is;
2. strip a markdown code fence, or prose around the outermost JSON object;
3. repair the syntax locally with `json_repair` (trailing commas, single quotes,
   a missing bracket) - a repaired value must still pass validation.

Whatever the text, this ends quickly with a `ParseOutcome`: JSON nested deeper than
Python's parser allows is "no_json", not a RecursionError; the placeholder checks
(`placeholders.py`) run in linear time on any text; and `json_repair`, which is
slow on large or deeply nested garbage, is only given JSON of at most `MAX_REPAIR_CHARS`
characters nested at most `MAX_REPAIR_DEPTH` levels - larger broken JSON is "no_json",
and the extraction re-asks instead.

Before any of that, a refusal (the API's `refusal` field, or refusal text with no
JSON in it) and a "lazy" answer (placeholders like `// ... rest of code`, `...`
as a value, `[truncated]`, `<rest of ...>`) are recognised: neither is parsed.

Example:
    >>> outcome = parse_output('Sure! ```json\\n{"name": "Ada",}\\n```')
    >>> outcome.kind, outcome.data, outcome.repaired, outcome.fixes
    ('json', {'name': 'Ada'}, True, ('fences', 'json_repair'))
"""

from __future__ import annotations

import functools
import json
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import json_repair
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

from prefect_openai_chat.extraction.placeholders import markers_in, placeholder_values
from prefect_openai_chat.results import ChatResult

M = TypeVar("M", bound=BaseModel)
MAX_REPAIR_CHARS = 64_000  # json_repair takes seconds on 100 KB of garbage
MAX_REPAIR_DEPTH = 100  # and time growing with the square of the nesting depth
ParseKind = Literal["json", "refusal", "lazy", "empty", "no_json"]

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n?(.*?)(?:```|\Z)", re.DOTALL)
_APOS = "['\u2019]"
_REFUSAL = re.compile(
    rf"\b(?:I{_APOS}m sorry|I am sorry|I apologi[sz]e|I can(?:no|{_APOS})t|I cannot"
    rf"|I{_APOS}m (?:not able|unable)|I am (?:not able|unable)|I won{_APOS}t|I will not"
    r"|as an AI)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ParseOutcome:
    """What one answer contained.

    Attributes:
        kind: "json" (data holds the value), "refusal", "lazy", "empty" or "no_json".
        data: The decoded JSON value when `kind == "json"`.
        fixes: Local fixes applied, in order: "fences", "prose", "json_repair"; then
            "cut" when the JSON ended inside a string (closed by the repair: its last
            value may be cut short, so `run_extraction` never takes it as it is).
        text: The text the value came from (content or tool arguments), unchanged.
        json_text: The JSON part alone (fences and prose removed), for a re-prompt.
        reason: A short human reason for anything but "json".
    """

    kind: ParseKind
    data: Any = None
    fixes: tuple[str, ...] = ()
    text: str = ""
    json_text: str = ""
    reason: str | None = None
    lazy_markers: tuple[str, ...] = field(default=())

    @property
    def cut(self) -> bool:
        """True when the answer ended inside a string: cut short, whatever its finish reason
        (a `stop` sequence, a server that reports "stop" at its limit)."""
        return "cut" in self.fixes

    @property
    def repaired(self) -> bool:
        """True when the answer was not plain JSON and a local fix produced the value."""
        return bool(self.fixes)


def answer_text(result: ChatResult) -> str:
    """The text to parse: the first tool call's arguments when there is one, else content."""
    if result.tool_calls:
        return result.tool_calls[0].arguments
    return result.content or ""


def parse_result(result: ChatResult) -> ParseOutcome:
    """Parse a `ChatResult` (tool arguments or content), honouring its `refusal` field."""
    if result.refusal:
        return ParseOutcome("refusal", text=result.refusal, reason=f"refused: {result.refusal}")
    return parse_output(answer_text(result))


def parse_output(text: str | None, *, refusal: str | None = None) -> ParseOutcome:
    """Parse one answer's text into JSON data; see the module docstring for the steps."""
    if refusal:
        return ParseOutcome("refusal", text=refusal, reason=f"refused: {refusal}")
    raw = text or ""
    stripped = raw.strip()
    if not stripped:
        return ParseOutcome("empty", text=raw, reason="the answer was empty")
    try:
        data = _loads(stripped)
    except ValueError:
        pass
    else:
        return _checked(data, (), raw, stripped)
    fixes: list[str] = []
    candidate = stripped
    fenced = _fenced(stripped)
    if fenced is not None:
        candidate = fenced
        fixes.append("fences")
    start = _json_start(candidate)
    if start < 0:
        if _REFUSAL.search(stripped):
            return ParseOutcome("refusal", text=raw, reason=f"refused: {_short(stripped)}")
        return ParseOutcome(
            "no_json", text=raw, reason=f"the answer contains no JSON object: {_short(stripped)}"
        )
    start, end = _best_segment(candidate, start)
    segment = candidate[start:end]
    if start > 0 or candidate[end:].strip():
        fixes.append("prose")
    markers = markers_in(segment)
    if markers:
        return _lazy(raw, segment, markers)
    try:
        data = _loads(segment)
    except ValueError:
        too_big = _too_big_to_repair(segment)
        if too_big:
            return ParseOutcome("no_json", text=raw, json_text=segment, reason=too_big)
        try:
            data = json_repair.repair_json(segment, return_objects=True, skip_json_loads=True)
        except Exception as exc:  # json_repair raises plain ValueError/RecursionError
            return ParseOutcome("no_json", text=raw, reason=f"unrepairable JSON: {exc}")
        if not isinstance(data, dict | list) or (data in ({}, []) and len(segment) > 2):
            return ParseOutcome(
                "no_json",
                text=raw,
                json_text=segment,
                reason="malformed JSON that cannot be repaired",
            )
        fixes.append("json_repair")
        if _ends_in_string(segment):
            fixes.append("cut")
    return _checked(data, tuple(fixes), raw, segment)


def wrapped_object(data: Any) -> dict[str, Any] | None:
    """The object a one-key object wraps (`{"Person": {...}}`), else None.

    Example:
        >>> wrapped_object({"Person": {"name": "Ada"}}), wrapped_object({"name": "Ada"})
        ({'name': 'Ada'}, None)
    """
    if isinstance(data, dict) and len(data) == 1:
        (inner,) = data.values()
        if isinstance(inner, dict):
            return inner
    return None


def validate(schema: type[M], data: Any) -> M:
    """Validate decoded JSON against `schema` (its own validators included).

    A `null` for a field that has a non-null default is dropped first, so that the
    default applies: strict structured outputs ask for every field, and say `null`
    for the optional ones. Raises `pydantic.ValidationError`, also when the schema's
    own code (a validator, a default factory) raises something else on this answer,
    such as the `KeyError` of `info.data["amount"]` after `amount` failed: that is a
    problem of the answer, re-asked like any other, not a crash.

    Example:
        >>> from pydantic import BaseModel
        >>> class Row(BaseModel):
        ...     n: int = 0
        >>> validate(Row, {"n": None}).n
        0
    """
    cleaned = drop_null_defaults(schema, data)
    try:
        return schema.model_validate(cleaned)
    except ValidationError:
        raise
    except Exception as exc:  # the schema's own code, on this answer
        raise user_code_error(schema, data, exc) from exc


def user_code_error(schema: type[BaseModel], data: Any, exc: Exception) -> ValidationError:
    """A `ValidationError` of the whole object saying what the schema's own code raised."""
    detail = f"{type(exc).__name__}: {exc}"
    error = PydanticCustomError(
        "schema_code_failed",
        "a validator or default factory of the schema raised {error} on this answer"
        " (often because a field it reads is missing or invalid)",
        {"error": detail[:300]},
    )
    return ValidationError.from_exception_data(
        schema.__name__, [InitErrorDetails(type=error, loc=(), input=data)]
    )


def drop_null_defaults(schema: type[BaseModel], data: Any) -> Any:
    """A copy of `data` without `null`s for fields whose default is not None (recursively)."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for key, droppable, nested in _field_plan(schema):
        if key not in out:
            continue
        value = out[key]
        if value is None:
            if droppable:
                del out[key]
        elif nested is not None:
            if isinstance(value, dict):
                out[key] = drop_null_defaults(nested, value)
            elif isinstance(value, list):
                out[key] = [drop_null_defaults(nested, v) for v in value]
    return out


@functools.lru_cache(maxsize=512)  # bounded: the plan refers to nested classes, no weak key
def _field_plan(schema: type[BaseModel]) -> tuple[tuple[str, bool, type[BaseModel] | None], ...]:
    """Per field: its JSON key, whether a `null` may be dropped, the model nested in it."""
    plan = []
    for name, info in schema.model_fields.items():
        plan.append((info.alias or name, _null_droppable(info), _model_in(info.annotation)))
    return tuple(plan)


def _null_droppable(info: FieldInfo) -> bool:
    """Whether a `null` for this field may be dropped so that its default applies.

    A default factory that reads the validated data (`lambda data: ...`) cannot be
    called here: its default is whatever it makes of the answer, so a `null` gives way
    to it. A factory that raises here keeps the `null` (validation then says why).
    """
    if info.is_required():
        return False
    if getattr(info, "default_factory_takes_validated_data", False):  # pydantic >= 2.10
        return True
    try:
        return info.get_default(call_default_factory=True) is not None
    except Exception:  # the schema's own code
        return False


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside `X`, `X | None`, `list[X]`, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _checked(data: Any, fixes: tuple[str, ...], raw: str, json_text: str) -> ParseOutcome:
    if not isinstance(data, dict | list):
        return ParseOutcome(
            "no_json",
            text=raw,
            json_text=json_text,
            reason=f"expected a JSON object, got {type(data).__name__}",
        )
    markers = placeholder_values(data)
    if markers:
        return _lazy(raw, json_text, markers)
    return ParseOutcome("json", data=data, fixes=fixes, text=raw, json_text=json_text)


def _lazy(raw: str, json_text: str, markers: list[str]) -> ParseOutcome:
    shown = ", ".join(repr(m) for m in markers[:3])
    return ParseOutcome(
        "lazy",
        text=raw,
        json_text=json_text,
        reason=f"placeholders instead of content: {shown}",
        lazy_markers=tuple(markers),
    )


def before_placeholders(outcome: ParseOutcome) -> str | None:
    """The JSON text of a lazy answer up to its first placeholder, else None.

    What comes before the first placeholder was written out in full: closed locally,
    it gives the fields a re-ask can keep (the field holding the placeholder is the
    one being written, and is left out like a cut answer's last field). None when the
    answer is not lazy or no placeholder can be found in its text.

    Example:
        >>> lazy = parse_output('{"name": "Ada", "city": "Oslo", "bio": "[truncated]"}')
        >>> before_placeholders(lazy)
        '{"name": "Ada", "city": "Oslo", "bio": "'
    """
    if outcome.kind != "lazy":
        return None
    text = outcome.json_text
    found = [i for i in (text.find(m) for m in outcome.lazy_markers if m) if i >= 0]
    return text[: min(found)] if found else None


def _fenced(text: str) -> str | None:
    """The content of the first fenced block holding JSON (preferring ```json), else None."""
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]
    blocks = [(lang, body) for lang, body in blocks if _json_start(body) >= 0]
    if not blocks:
        return None
    for lang, body in blocks:
        if lang in ("json", "jsonc", "json5"):
            return body.strip()
    return blocks[0][1].strip()


def _json_start(text: str) -> int:
    """Index of the first `{` (an object is what a schema asks for), else of `[`, else -1."""
    brace = text.find("{")
    return brace if brace >= 0 else text.find("[")


def _best_segment(text: str, first: int, max_tries: int = 20) -> tuple[int, int]:
    """`(start, end)` of the JSON in `text`: the longest bracketed part that loads as is,
    else the longest part (an unclosed one runs to the end) for `json_repair`."""
    opener = text[first]
    loadable: tuple[int, int] | None = None
    longest = (first, first)
    start = first
    for _ in range(max_tries):
        end = _json_end(text, start)
        span = (start, end if end > 0 else len(text))
        if span[1] - span[0] > longest[1] - longest[0]:
            longest = span
        if end > 0 and (loadable is None or end - start > loadable[1] - loadable[0]):
            try:
                _loads(text[start:end])
            except ValueError:
                pass
            else:
                loadable = span
        if end < 0:
            break
        start = text.find(opener, end)
        if start < 0:
            break
    return loadable or longest


def _loads(text: str) -> Any:
    """`json.loads`; JSON nested deeper than Python's parser allows is a ValueError too."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply for Python's parser") from None


def _too_big_to_repair(segment: str) -> str | None:
    """Why `segment` is not given to `json_repair` (too long or too deep), else None."""
    if len(segment) > MAX_REPAIR_CHARS:
        return (
            f"malformed JSON of {len(segment):,} characters, more than the {MAX_REPAIR_CHARS:,}"
            " repaired locally"
        )
    depth = _max_depth(segment)
    if depth > MAX_REPAIR_DEPTH:
        return (
            f"malformed JSON nested {depth} levels deep, more than the {MAX_REPAIR_DEPTH}"
            " repaired locally"
        )
    return None


def _max_depth(text: str) -> int:
    """The deepest bracket nesting in `text`, outside strings."""
    depth = deepest = 0
    for token in _STRUCTURE.finditer(text):
        ch = token.group()
        if ch in "{[":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "}]":
            depth -= 1
    return deepest


# A JSON string (or an unclosed one, to the end) or a bracket: what bracket matching reads.
_DEEPEST = 5_000
_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


_CLOSED_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def _ends_in_string(text: str) -> bool:
    """Whether `text` ends inside a JSON string (one opened and never closed).

    Example:
        >>> _ends_in_string('{"a": "b", "c": "cut he'), _ends_in_string('{"a": "b"')
        (True, False)
    """
    last = None
    for token in _STRUCTURE.finditer(text):
        if token.group().startswith('"'):
            last = token.group()
    return last is not None and _CLOSED_STRING.fullmatch(last) is None


def _json_end(text: str, start: int) -> int:
    """Index just past the bracket closing the one at `start`, or -1 if it never closes.

    Past `_DEEPEST` levels it stops looking (-1): Python's parser cannot load that anyway.
    """
    depth = 0
    for token in _STRUCTURE.finditer(text, start):
        ch = token.group()
        if ch in "{[":
            depth += 1
            if depth > _DEEPEST:
                return -1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return token.end()
    return -1


def _short(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
