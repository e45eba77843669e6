"""`extract_records`: the ETL flow that turns free-text records into validated rows.

Every input record ends exactly once: valid rows in `output` (JSONL, Parquet or
SQLite, by extension), everything else in `quarantine` with the reason, the
attempts and the last raw output. A re-run pays only for records it has not done
(the record ledger is keyed on content, schema, prompt, model and generation
parameters), and runs sharing a ledger never pay twice for one record.

What to extract is one `ExtractionSpec`, how to run it one `RunOptions`; both are
checked when made, and the run's pre-flight (`checks.preflight`) checks the rest
before any call. The runners: `flows/online.py` (chunks of records as tasks),
`flows/batch_api.py` (the OpenAI Batch API), `flows/fan_out.py` (shards).

Example:
    ```python
    from prefect_openai_chat import ExtractionSpec, RunOptions
    from prefect_openai_chat.flows import extract_records

    summary = extract_records(
        source="tickets.jsonl",
        output="out/tickets.parquet",
        quarantine="out/quarantine.jsonl",
        spec=ExtractionSpec(
            schema="prefect_openai_chat.examples.tickets:SupportTicket",
            prompt="Subject: {subject}\\n\\n{body}",
            key_field="ticket_id",
        ),
        chat_model="nightly-chat-model",
        run=RunOptions(concurrency=32),
    )
    assert summary["records"] == summary["valid"] + summary["quarantined"]
    ```
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

from prefect_openai_chat.blocks import ChatModel
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction.spec import ExtractionSpec
from prefect_openai_chat.extraction.templates import PromptTemplateError
from prefect_openai_chat.flows.fan_out import fan_out
from prefect_openai_chat.flows.options import RunOptions
from prefect_openai_chat.flows.records import run_records
from prefect_openai_chat.flows.sources import source_flow

# The keyword arguments `extract_records` took before `spec` and `run`, and where each went.
SPEC_FIELDS = ("schema", "prompt", "instructions", "mode", "max_reprompts", "key_field")
RUN_FIELDS = {
    "batch_size": "chunk_size",
    "concurrency": "concurrency",
    "cache": "cache",
    "via": "via",
    "batch_options": "batch_api",
    "per_record_tasks": "per_record_tasks",
    "shards": "shards",
    "shard_deployment": "shard_deployment",
    "allow_local_paths": "allow_local_paths",
    "return_rows": "return_rows",
    "storage_options": "storage_options",
}


@source_flow(name="extract-records", log_prints=True)
def extract_records(
    source: str | Iterable[Any],  # items are checked one by one: a non-dict is quarantined
    output: str,
    quarantine: str,
    spec: ExtractionSpec | None = None,
    chat_model: ChatModel | str | None = None,
    run: RunOptions | None = None,
    **flat: Any,
) -> dict[str, Any]:
    """Extract `spec` from every record of `source` into `output`, the rest into `quarantine`.

    Args:
        source: A .jsonl or .csv path or URL (`s3://`, `gs://`, `az://`, any fsspec URL;
            streamed), an iterable of dicts (a generator too), or a pandas or polars
            DataFrame or a pyarrow Table (one record per row; NaN, NaT and nulls as null,
            numpy scalars as numbers: docs/concepts/exactly-once.md).
        output: Where valid rows go: .jsonl, .parquet or .sqlite, a path or a URL.
        quarantine: Where failed records go, with the reason: .jsonl, .parquet or .sqlite;
            on the same kind of storage as `output` (both local, or both URLs).
        spec: What to extract (`ExtractionSpec`: schema, prompt, instructions, mode,
            max_reprompts, token_budget, key_field); a dict of them in a deployment.
        chat_model: A `ChatModel` block, or the name of a saved one.
        run: How to run it (`RunOptions`: chunk_size, concurrency, cache, via, batch_api,
            per_record_tasks, shards, shard_deployment, allow_local_paths,
            storage_options, return_rows); the defaults without it.
        **flat: Deprecated: the fields of `spec` and `run` as keyword arguments, under
            their names before (`schema=`, `batch_size=`, `batch_options=`, ...).

    Returns:
        The run's totals; `records == valid + quarantined` always (with
        `RunOptions(return_rows=True)`, the valid rows too, as `rows`).
    """
    spec, run = _from_flat(spec, run, flat)
    if chat_model is None:
        raise InvalidInputError(
            "extract_records needs a chat_model: a ChatModel block, or a saved one's name"
        )
    if run.sharded:
        return fan_out(source, output, quarantine, spec, chat_model, run)
    return run_records(source, output, quarantine, spec, chat_model, run)


def _from_flat(
    spec: ExtractionSpec | None, run: RunOptions | None, flat: dict[str, Any]
) -> tuple[ExtractionSpec, RunOptions]:
    """The spec and the run options, with the deprecated flat keyword arguments folded in."""
    unknown = sorted(set(flat) - set(SPEC_FIELDS) - set(RUN_FIELDS))
    if unknown:
        raise InvalidInputError(
            f"extract_records got unexpected keyword argument(s) {unknown}; what to extract"
            " goes in spec=ExtractionSpec(...), how to run it in run=RunOptions(...)"
        )
    spec_fields = {name: flat[name] for name in SPEC_FIELDS if name in flat}
    run_fields = {RUN_FIELDS[name]: flat[name] for name in RUN_FIELDS if name in flat}
    if flat:
        warnings.warn(
            f"extract_records({', '.join(f'{name}=' for name in flat)}...): pass"
            " spec=ExtractionSpec(...) and run=RunOptions(...) instead (docs/migrating.md)",
            DeprecationWarning,
            stacklevel=4,
        )
    if (spec_fields and spec is not None) or (run_fields and run is not None):
        raise InvalidInputError(
            f"extract_records got {sorted(flat)} and the object they belong in: set them in"
            " spec=ExtractionSpec(...) or run=RunOptions(...)"
        )
    if spec is None:
        if "schema" not in spec_fields:
            raise InvalidInputError(
                "extract_records needs spec=ExtractionSpec(schema=..., prompt=...): what to"
                " extract from each record"
            )
        try:
            spec = ExtractionSpec(**spec_fields)
        except PromptTemplateError as exc:  # a run's bad input, as every other pre-flight one
            raise InvalidInputError(str(exc)) from exc
    if run is None:
        run = RunOptions(**run_fields)
    return spec, run
