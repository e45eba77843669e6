"""Per-record prompt rendering that fails per record, never for the whole batch.

A prompt is a `str.format` template over a record's fields (`{subject}`, `{meta[lang]}`,
`{body:.200}`); a text record has one field, `{text}`. A template that cannot work for
any record (a lone `{`, a positional `{0}`, attribute access `{a.b}`, an unknown
conversion, a format spec that takes its width or precision from the record, `{text:>{w}}`,
or asks for a width or precision above `MAX_SPEC_SIZE`) raises `PromptTemplateError` before
anything is sent: a record's `w` of 2000000000 would build a 2 GB prompt. A record that does not
fit the template (a missing field, `{meta[src]}` on a string, a format spec its value
does not take) raises `RecordTemplateError`, an `InvalidInputError`, naming the field and
the problem: that record is skipped, the others go on.

Example:
    >>> from prefect_openai_chat.extraction.templates import render
    >>> render({"subject": "Refund", "meta": {"lang": "de"}}, "{subject} ({meta[lang]})")
    'Refund (de)'
    >>> render({"subject": 5}, "{meta[lang]}")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    RecordTemplateError: the record has no field 'meta', which the prompt template needs
"""

from __future__ import annotations

import _string  # CPython's own field-name parser (what str.format uses)
import functools
import json
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prefect_openai_chat.errors import ChatError, InvalidInputError

_CONVERSIONS = (None, "r", "s", "a")
MAX_SPEC_SIZE = 10_000  # the largest width or precision a format spec may ask for
# The standard format spec: [[fill]align][sign][z][#][0][width][grouping][.precision][type]
_SPEC = re.compile(
    r"(?:.?[<>=^])?[-+ ]?z?#?0?(?P<width>\d*)[_,]?(?:\.(?P<precision>\d*))?[a-zA-Z%]?", re.DOTALL
)


class PromptTemplateError(ChatError, ValueError):
    """The prompt template cannot work for any record; nothing was sent."""


class RecordTemplateError(InvalidInputError):
    """One record does not fit the prompt template; that record is skipped."""


@dataclass(frozen=True)
class _Field:
    name: str  # as written, e.g. "meta[lang]"
    base: str  # the record field, e.g. "meta"
    path: tuple[int | str, ...]  # the item lookups after it
    conversion: str | None
    spec: str  # the format spec, literal text only


@functools.lru_cache(maxsize=64)
def parse(prompt: str) -> tuple[tuple[str, _Field | None], ...]:
    """The template as (literal text, field) pairs; raises `PromptTemplateError`."""
    try:
        parts = list(string.Formatter().parse(prompt))
    except ValueError as exc:
        raise PromptTemplateError(
            f"the prompt template is malformed: {exc} (write {{{{ and }}}} for literal braces)"
        ) from None
    out: list[tuple[str, _Field | None]] = []
    for literal, name, spec, conversion in parts:
        if name is None:
            out.append((literal, None))
            continue
        out.append((literal, _field(name, spec or "", conversion)))
    return tuple(out)


def _field(name: str, spec: str, conversion: str | None) -> _Field:
    try:
        base, rest = _string.formatter_field_name_split(name)
        lookups = list(rest)
    except ValueError as exc:
        raise PromptTemplateError(
            f"the prompt template field {{{name}}} is malformed: {exc}"
        ) from None
    if isinstance(base, int) or not base:
        raise PromptTemplateError(
            f"the prompt template uses a positional field {{{name}}}; name the record field"
            " instead, e.g. {text} or {subject}"
        )
    path: list[int | str] = []
    for is_attribute, key in lookups:
        if is_attribute:
            raise PromptTemplateError(
                f"the prompt template uses attribute access {{{name}}}; use {{{base}[{key}]}}"
                " for a nested field"
            )
        path.append(key)
    if conversion not in _CONVERSIONS:
        raise PromptTemplateError(
            f"the prompt template field {{{name}!{conversion}}} has an unknown conversion;"
            " use !r, !s or !a"
        )
    return _Field(name, base, tuple(path), conversion, _checked_spec(name, spec))


def _checked_spec(name: str, spec: str) -> str:
    """`spec` when it is literal and its width and precision are at most `MAX_SPEC_SIZE`."""
    if "{" in spec or "}" in spec:
        raise PromptTemplateError(
            f"the prompt template field {{{name}:{spec}}} takes its format spec from the record;"
            " a record's value would set the width or precision (a width of 2000000000 builds a"
            f" 2 GB prompt): write them in the template, such as {{{name}:>20}} or {{{name}:.200}}"
        )
    match = _SPEC.fullmatch(spec)
    for part in ("width", "precision"):
        digits = (match.group(part) or "").lstrip("0") if match else ""
        if len(digits) > len(str(MAX_SPEC_SIZE)) or int(digits or 0) > MAX_SPEC_SIZE:
            raise PromptTemplateError(
                f"the prompt template field {{{name}:{spec}}} asks for a {part} of"
                f" {digits[:12]}{'...' if len(digits) > 12 else ''} characters; at most"
                f" {MAX_SPEC_SIZE:,} is allowed"
            )
    return spec


def template_fields(prompt: str) -> set[str]:
    """The record fields a template uses."""
    return {field.base for _, field in parse(prompt) if field is not None}


def render(record: Mapping[str, Any] | str, prompt: str | None) -> str:
    """The text sent for a record: the template over its fields, or the record itself."""
    if prompt is None:
        if isinstance(record, str):
            return record
        return json.dumps(record, ensure_ascii=False, default=str)
    parts = parse(prompt)
    if isinstance(record, str):
        other = sorted(template_fields(prompt) - {"text"})
        if other:
            raise RecordTemplateError(
                f"the record is a text, not an object with fields: the prompt template can use"
                f" only {{text}} for it, not {', '.join('{' + name + '}' for name in other)}"
            )
        return _render(parts, {"text": record})
    return _render(parts, record)


def _render(parts: tuple[tuple[str, _Field | None], ...], values: Mapping[str, Any]) -> str:
    out: list[str] = []
    for literal, field in parts:
        out.append(literal)
        if field is not None:
            out.append(_format(field, values))
    return "".join(out)


def _format(field: _Field, values: Mapping[str, Any]) -> str:
    value = _lookup(field, values)
    if field.conversion == "r":
        value = repr(value)
    elif field.conversion == "s":
        value = str(value)
    elif field.conversion == "a":
        value = ascii(value)
    spec = field.spec
    try:
        return format(value, spec)
    except (TypeError, ValueError) as exc:
        raise RecordTemplateError(
            f"the prompt template field {{{field.name}:{spec}}} does not apply to the record's"
            f" {type(value).__name__} value ({exc})"
        ) from None


def _lookup(field: _Field, values: Mapping[str, Any]) -> Any:
    if field.base not in values:
        raise RecordTemplateError(
            f"the record has no field {field.base!r}, which the prompt template needs"
        )
    value = values[field.base]
    seen = field.base
    for key in field.path:
        value = _item(value, key, seen, field.name)
        seen = f"{seen}[{key}]"
    return value


def _item(value: Any, key: int | str, seen: str, name: str) -> Any:
    if isinstance(value, Mapping):
        for candidate in (key, str(key)):
            if candidate in value:
                return value[candidate]
        raise RecordTemplateError(
            f"the record's {seen} has no key {str(key)!r}, which the prompt template field"
            f" {{{name}}} needs"
        )
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        if not isinstance(key, int):
            raise RecordTemplateError(
                f"the record's {seen} is a list; the prompt template field {{{name}}} needs a"
                f" number as index, not {key!r}"
            )
        if not -len(value) <= key < len(value):
            raise RecordTemplateError(
                f"the record's {seen} has {len(value)} items; the prompt template field"
                f" {{{name}}} asks for item {key}"
            )
        return value[key]
    raise RecordTemplateError(
        f"the record's {seen} is a {type(value).__name__}, not an object or a list; the prompt"
        f" template field {{{name}}} looks inside it"
    )
