"""`triage_then_extract`: LLM steps composed with ordinary ETL steps in one flow.

Load and clean the records (plain Python), classify each one (an LLM step),
route it to the schema for its class (plain Python), extract with that schema
(an LLM step), and write one file per class plus a quarantine file (plain Python).

Example:
    ```python
    from prefect_openai_chat.flows.triage import triage_then_extract

    counts = triage_then_extract("tickets.jsonl", "nightly-chat-model", "out/triage")
    ```
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from prefect import flow, task
from pydantic import BaseModel

from prefect_openai_chat.blocks import ChatModel
from prefect_openai_chat.examples.tickets import SCHEMA_FOR_KIND, TICKET_PROMPT, TicketTriage
from prefect_openai_chat.extraction.spec import ExtractionSpec
from prefect_openai_chat.flows.sinks import open_sink
from prefect_openai_chat.flows.sources import check_source, read_records
from prefect_openai_chat.results import RecordOutcome
from prefect_openai_chat.tasks import extract_chunk


@task(name="load-records")
def load_records(
    source: str | Iterable[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Read and clean the records: (usable ones, unusable ones with a reason)."""
    check_source(source)
    usable, unusable = [], []
    for item in read_records(source):
        record = item.record
        if record is None or not str(record.get("body", "")).strip():
            unusable.append(
                {"line": item.line, "reason": item.error or "empty body", "record": record}
            )
            continue
        usable.append({k: v.strip() if isinstance(v, str) else v for k, v in record.items()})
    return usable, unusable


@task(name="route-by-kind")
def route(
    records: list[dict[str, Any]], triage: list[RecordOutcome]
) -> dict[str, list[dict[str, Any]]]:
    """Group records by the kind their triage found; failed triage goes to 'other'."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record, outcome in zip(records, triage, strict=True):
        kind = (outcome.value or {}).get("kind", "other") if outcome.ok else "other"
        groups[kind].append(record)
    return dict(groups)


@task(name="write-outputs")
def write_outputs(
    output_dir: str,
    kind: str,
    schema: type[BaseModel],
    outcomes: list[RecordOutcome],
    records: list[dict[str, Any]],
) -> dict[str, int]:
    """Write one class's valid rows to `<kind>.jsonl`, the rest to `quarantine-<kind>.jsonl`."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with (
        open_sink(folder / f"{kind}.jsonl", schema) as rows,
        open_sink(folder / f"quarantine-{kind}.jsonl") as bad,
    ):
        for record, outcome in zip(records, outcomes, strict=True):
            if outcome.ok:
                rows.write({"_key": outcome.key, **(outcome.value or {})})
            else:
                bad.write({"key": outcome.key, "reason": outcome.reason, "record": record})
    return {"valid": rows.rows, "quarantined": bad.rows}


@task(name="write-unusable")
def write_unusable(output_dir: str, unusable: list[dict[str, Any]]) -> dict[str, int]:
    """Records that could not be read or were empty go to `quarantine-unreadable.jsonl`."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open_sink(folder / "quarantine-unreadable.jsonl") as bad:
        for row in unusable:
            bad.write(row)
    return {"valid": 0, "quarantined": bad.rows}


@flow(name="triage-then-extract")
def triage_then_extract(
    source: str | Iterable[dict[str, Any]],
    chat_model: ChatModel | str,
    output_dir: str,
    prompt: str = TICKET_PROMPT,
    key_field: str = "ticket_id",
    concurrency: int = 16,
) -> dict[str, dict[str, int]]:
    """Classify each ticket, extract it with the schema of its class, write one file per class.

    Returns:
        Per class (and "unreadable"), how many rows were valid and how many quarantined.
    """
    records, unusable = load_records(source)
    triage = extract_chunk(
        chat_model,
        ExtractionSpec(schema=TicketTriage, prompt=prompt, key_field=key_field),
        records,
        concurrency=concurrency,
        label="triage",
    )
    groups = route(records, triage.records)
    counts = {"unreadable": write_unusable(output_dir, unusable)}
    for kind, group in sorted(groups.items()):
        schema = SCHEMA_FOR_KIND.get(kind, SCHEMA_FOR_KIND["other"])
        report = extract_chunk(
            chat_model,
            ExtractionSpec(schema=schema, prompt=prompt, key_field=key_field),
            group,
            concurrency=concurrency,
            label=f"{kind} ({len(group)})",
        )
        counts[kind] = write_outputs(output_dir, kind, schema, report.records, group)
    return counts
