"""Checks made before any API call: `preflight`, the one pre-flight of every run.

What concerns only the spec (schema, template, mode, numbers) or only the run's
options (their combinations) is checked when those objects are made
(`ExtractionSpec`, `RunOptions`); what needs the source, the outputs and the ledger
is checked here, once per run, sharded or not.

Example:
    >>> from prefect_openai_chat.flows.checks import template_fields
    >>> sorted(template_fields("Subject: {subject}\\n\\n{body}"))
    ['body', 'subject']
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction import templates
from prefect_openai_chat.extraction.ledger import ledger_kind, ledger_role
from prefect_openai_chat.extraction.spec import ExtractionSpec, resolve_schema
from prefect_openai_chat.flows.options import RunOptions
from prefect_openai_chat.flows.sinks import (
    Target,
    check_distinct,
    check_sqlite_columns,
    check_writable,
    columns_of,
    hold_outputs,
)
from prefect_openai_chat.flows.source_lines import SourceItem
from prefect_openai_chat.flows.sources import (
    Source,
    check_source,
    has_key,
    read_records,
)
from prefect_openai_chat.storage import Location, plain_options
from prefect_openai_chat.tasks import ledger_path, record_ledger, run_logger

__all__ = ["CheckedRun", "preflight", "resolve_schema", "template_fields"]


def template_fields(prompt: str) -> set[str]:
    """The record fields a `str.format` template uses; malformed templates are refused."""
    try:
        return templates.template_fields(prompt)
    except templates.PromptTemplateError as exc:
        raise InvalidInputError(str(exc)) from exc


def check_template_against(
    items: Iterable[SourceItem], fields: set[str], key_field: str | None = None
) -> tuple[int, int]:
    """Raise when the template names a field that no record of the source has, or when
    `key_field` is missing (or null, or blank) on every readable record.

    An unreadable record (quarantined for its own fault: a lone surrogate, too deep)
    whose text holds the field's name counts as having it: the template is right, and
    the night goes on with the records that have it, not refused for the ones that do not.

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
        elif missing and isinstance(item.raw, str):
            missing = {field for field in missing if json.dumps(field) not in item.raw}
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


@dataclass(frozen=True)
class CheckedRun:
    """A run's checked inputs: the source (a list for an iterable: read twice), where rows go.

    `output` and `quarantine` are `Path`s, or `Location`s for URLs (a sharded run's too:
    its parts then live under the output's URL).
    """

    source: str | Path | Location | list[Any]
    output: Target
    quarantine: Target


def batch_api_folder(cache: bool | str) -> Path:
    """The `batch-runs` folder of this host: where a Batch API run keeps its batches without
    a record ledger (`cache=False`), and where runs started before they moved into the
    record ledger left them (read once, then removed)."""
    where = ledger_path(cache)
    return (where or ledger_path()).parent / "batch-runs"  # type: ignore[union-attr]


def preflight(
    source: str | Path | Iterable[Any],
    output: str,
    quarantine: str,
    spec: ExtractionSpec,
    run: RunOptions,
    folders: dict[str, Path] | None = None,
) -> CheckedRun:
    """Every check that can fail before the first call; InvalidInputError says what to fix.

    The one pre-flight of a run, sharded (`fan_out`, which adds its part folder to
    `folders`) or not: the source opens, no two roles on one file (the ledger as
    `record_ledger` resolves it), no other run writing the outputs, a PostgreSQL ledger
    that answers, a prompt and key field the source's records fit. URLs are opened with
    the run's `storage_options` (a dict or a `SecretDict`).
    """
    if spec.prompt is None:
        raise InvalidInputError(
            "extract_records needs a prompt: ExtractionSpec(prompt='Subject: {subject}"
            "\\n\\n{body}', ...), a str.format template over the records' fields"
        )
    options = plain_options(run.storage_options)
    found = check_source(source, options)  # a URL as a Location
    out_path = check_writable(output, "output", options)
    if out_path.suffix.lower() in (".sqlite", ".db"):
        check_sqlite_columns(columns_of(spec.schema_class, "_key"))
    quarantine_path = check_writable(quarantine, "quarantine", options)
    roles: dict[str, Target | None] = {
        "source": _source_file(found),
        "output": out_path,
        "quarantine": quarantine_path,
        ledger_role(run.cache): ledger_path(run.cache),
    }
    if run.via == "batch":
        roles["the Batch API's batch-ledger folder"] = batch_api_folder(run.cache)
    check_distinct(roles, folders)
    with hold_outputs(out_path, quarantine_path):  # refused now if another run writes them
        pass
    if ledger_kind(run.cache) == "postgres":  # a bad URL or a database down: before any call
        record_ledger(run.cache).close()  # type: ignore[union-attr]
    checked = found if isinstance(found, str | Path | Location) else list(found)  # read twice
    check_source_against_prompt(checked, spec.prompt, spec.key_field)
    return CheckedRun(checked, out_path, quarantine_path)


def _source_file(source: Any) -> Target | None:
    """The file a source is read from, for the path-collision check; None for an iterable."""
    if isinstance(source, Location | Path):
        return source
    return Path(source) if isinstance(source, str) else None
