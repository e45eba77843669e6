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
from prefect_openai_chat.flows.sources import Source, SourceItem, read_records
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


def check_template_against(items: Iterable[SourceItem], fields: set[str]) -> tuple[int, int]:
    """Raise when the template names a field that no readable record of the source has.

    Returns how many items and readable records were looked at (it stops early once
    every field was seen): (0, 0) for an empty source.
    """
    missing = set(fields)
    seen = readable = 0
    for item in items:
        seen += 1
        if item.record is not None:
            readable += 1
            missing -= item.record.keys()
            if not missing:
                return seen, readable
    if missing and readable:
        raise InvalidInputError(
            f"the prompt template names {sorted(missing)}, which no record of the source has;"
            " fix the template or the source"
        )
    return seen, readable


def check_source_against_prompt(source: Source, prompt: str) -> None:
    """Refuse a malformed prompt or one no record fits; warn when the source has no record.

    An empty source is no error: the run finishes with 0 records and empty files.
    """
    fields = template_fields(prompt)
    seen, readable = check_template_against(read_records(source), fields)
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
