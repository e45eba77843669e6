"""Checks made before any API call: the schema, the prompt template, the source's fields.

Example:
    >>> from prefect_openai_chat.flows.checks import template_fields
    >>> sorted(template_fields("Subject: {subject}\\n\\n{body}"))
    ['body', 'subject']
"""

from __future__ import annotations

import importlib
import string
from collections.abc import Iterable

from pydantic import BaseModel

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.flows.sources import SourceItem


def resolve_schema(schema: type[BaseModel] | str) -> type[BaseModel]:
    """A pydantic model, given itself or an import path such as `"pkg.module:Model"`."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema
    if not isinstance(schema, str) or ":" not in schema:
        raise InvalidInputError(
            "schema must be a pydantic model or an import path 'package.module:Model',"
            f" got {schema!r}"
        )
    module_name, _, attribute = schema.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInputError(
            f"schema {schema!r}: module {module_name!r} cannot be imported ({exc})"
        ) from exc
    found = getattr(module, attribute, None)
    if found is None:
        raise InvalidInputError(
            f"schema {schema!r}: {module_name!r} has no attribute {attribute!r}"
        )
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise InvalidInputError(
            f"schema {schema!r} is a {type(found).__name__}, not a pydantic model"
        )
    return found


def template_fields(prompt: str) -> set[str]:
    """The record fields a `str.format` template uses."""
    try:
        parsed = list(string.Formatter().parse(prompt))
    except ValueError as exc:
        raise InvalidInputError(f"prompt template is malformed: {exc}") from exc
    fields = set()
    for _, name, _, _ in parsed:
        if name is None:
            continue
        base = name.split(".")[0].split("[")[0]
        if not base or base.isdigit():
            raise InvalidInputError(
                f"prompt template uses a positional field {{{name}}}; name the record field instead"
            )
        fields.add(base)
    return fields


def check_template_against(items: Iterable[SourceItem], fields: set[str]) -> None:
    """Raise when the template names a field that no record of the source has."""
    missing = set(fields)
    for item in items:
        if item.record is not None:
            missing -= item.record.keys()
            if not missing:
                return
    if missing:
        raise InvalidInputError(
            f"the prompt template names {sorted(missing)}, which no record of the source has;"
            " fix the template or the source"
        )
