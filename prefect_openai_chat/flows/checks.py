"""Checks made before any API call: the schema, the prompt template, the source's fields.

Example:
    >>> from prefect_openai_chat.flows.checks import template_fields
    >>> sorted(template_fields("Subject: {subject}\\n\\n{body}"))
    ['body', 'subject']
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction import templates
from prefect_openai_chat.flows.sources import Source, SourceItem, has_key, read_records
from prefect_openai_chat.storage import Location
from prefect_openai_chat.tasks._common import run_logger


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
    """The record fields a `str.format` template uses; malformed templates are refused."""
    try:
        return templates.template_fields(prompt)
    except templates.PromptTemplateError as exc:
        raise InvalidInputError(str(exc)) from exc


def check_template_against(
    items: Iterable[SourceItem], fields: set[str], key_field: str | None = None
) -> tuple[int, int]:
    """Raise when the template names a field that no readable record of the source has,
    or when `key_field` is missing (or null, or blank) on every readable record.

    Returns how many items and readable records were looked at (it stops early once
    every field and a key were seen): (0, 0) for an empty source.
    """
    missing = set(fields)
    keyed = not key_field
    seen = readable = 0
    names: dict[str, None] = {}  # the fields the records have, in order, for the message
    for item in items:
        seen += 1
        if item.record is not None:
            readable += 1
            missing -= item.record.keys()
            keyed = keyed or has_key(item.record, key_field)
            if not keyed and len(names) < 50:
                names.update(dict.fromkeys(map(str, item.record)))
            if not missing and keyed:
                return seen, readable
    if missing and readable:
        raise InvalidInputError(
            f"the prompt template names {sorted(missing)}, which no record of the source has;"
            " fix the template or the source"
        )
    if not keyed and readable:
        raise InvalidInputError(
            f"key_field {key_field!r} is missing (or null, or blank) on every record of the"
            f" source; the records have the fields {list(names)[:20]}: pass one of them as"
            " key_field, or key_field=None to key the records by their position in the source"
        )
    return seen, readable


def check_source_against_prompt(source: Source, prompt: str, key_field: str | None = None) -> None:
    """Refuse a malformed prompt, one no record fits, or a `key_field` no record has;
    warn when the source has no record.

    An empty source is no error: the run finishes with 0 records and empty files.
    """
    fields = template_fields(prompt)
    seen, readable = check_template_against(read_records(source), fields, key_field)
    name = str(source) if isinstance(source, str | Path | Location) else "the iterable"
    if not seen:
        run_logger().warning(
            "source %s is empty: no record to extract; the run writes empty output and"
            " quarantine files",
            name,
        )
    elif not readable:
        run_logger().warning(
            "source %s has no readable record: every line goes to quarantine with the reason",
            name,
        )
