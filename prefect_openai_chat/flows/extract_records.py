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

import inspect
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from prefect_openai_chat.blocks import ChatModel
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction.spec import ExtractionSpec
from prefect_openai_chat.extraction.templates import PromptTemplateError
from prefect_openai_chat.flows.fan_out import fan_out
from prefect_openai_chat.flows.options import RunOptions
from prefect_openai_chat.flows.records import run_records
from prefect_openai_chat.flows.source_flow import SourceFlow

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
FLAT_FIELDS = frozenset(SPEC_FIELDS) | frozenset(RUN_FIELDS)
CALL_OPTIONS = frozenset({"return_state", "wait_for"})  # `Flow.__call__`'s own keywords

P = ParamSpec("P")
R = TypeVar("R")


class FlatKeywordsFlow(SourceFlow[P, R]):
    """`extract_records` as a flow that still takes the deprecated flat keywords.

    The flow's function has only `source`, `output`, `quarantine`, `spec`, `chat_model`
    and `run`, so its parameter schema (the deployment's form in the UI) has those six
    and nothing else. A Python call with the old flat keywords (`schema=`,
    `batch_size=`, ...) has them folded into `spec` and `run` before the flow run is made,
    with a `DeprecationWarning`; a deployment's parameters saved under the old names are
    folded the same way when its run starts (`validate_parameters`).
    """

    if not TYPE_CHECKING:  # type checkers keep `Flow.__call__`'s precise overloads

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            flat = {name: kwargs.pop(name) for name in list(kwargs) if name in FLAT_FIELDS}
            known = set(inspect.signature(self.fn).parameters) | CALL_OPTIONS
            unknown = sorted(set(kwargs) - known)
            if unknown:
                raise InvalidInputError(
                    f"extract_records got unexpected keyword argument(s) {unknown}; what to"
                    " extract goes in spec=ExtractionSpec(...), how to run it in"
                    " run=RunOptions(...)"
                )
            if flat:
                options = {name: kwargs.pop(name) for name in CALL_OPTIONS if name in kwargs}
                bound = inspect.signature(self.fn).bind_partial(*args, **kwargs)
                given = bound.arguments
                given["spec"], given["run"] = fold_flat(
                    given.get("spec"), given.get("run"), flat, stacklevel=2
                )
                args, kwargs = bound.args, {**bound.kwargs, **options}
            return super().__call__(*args, **kwargs)

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """As `SourceFlow.validate_parameters`, with a deployment's parameters saved under
        the old flat names (or under `flat`, as the flow took them for a while) folded into
        `spec` and `run`."""
        flat = {name: value for name, value in parameters.items() if name in FLAT_FIELDS}
        saved = parameters.get("flat")
        if isinstance(saved, dict):
            flat.update(saved)
        parameters = {
            name: value
            for name, value in parameters.items()
            if name not in FLAT_FIELDS and name != "flat"
        }
        if flat:
            parameters["spec"], parameters["run"] = fold_flat(
                parameters.get("spec"), parameters.get("run"), flat, stacklevel=2
            )
        return super().validate_parameters(parameters)


def flat_keywords_flow(**options: Any) -> Callable[[Callable[P, R]], FlatKeywordsFlow[P, R]]:
    """Like `@flow(**options)`, as a `FlatKeywordsFlow`."""

    def wrap(fn: Callable[P, R]) -> FlatKeywordsFlow[P, R]:
        return FlatKeywordsFlow(fn=fn, **options)

    return wrap


@flat_keywords_flow(name="extract-records", log_prints=True)
def extract_records(
    source: str | Iterable[Any],  # items are checked one by one: a non-dict is quarantined
    output: str,
    quarantine: str,
    spec: ExtractionSpec | None = None,
    chat_model: ChatModel | str | None = None,
    run: RunOptions | None = None,
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

    The fields of `spec` and `run` as keyword arguments, under their names before
    (`schema=`, `batch_size=`, `batch_options=`, ...), still work from Python, with a
    `DeprecationWarning` (`FlatKeywordsFlow`); they are not parameters of the flow.

    Returns:
        The run's totals; `records == valid + quarantined` always (with
        `RunOptions(return_rows=True)`, the valid rows too, as `rows`).
    """
    if spec is None:
        raise InvalidInputError(
            "extract_records needs spec=ExtractionSpec(schema=..., prompt=...): what to"
            " extract from each record"
        )
    if chat_model is None:
        raise InvalidInputError(
            "extract_records needs a chat_model: a ChatModel block, or a saved one's name"
        )
    run = run or RunOptions()
    if run.sharded:
        return fan_out(source, output, quarantine, spec, chat_model, run)
    return run_records(source, output, quarantine, spec, chat_model, run)


def fold_flat(
    spec: ExtractionSpec | dict[str, Any] | None,
    run: RunOptions | dict[str, Any] | None,
    flat: dict[str, Any],
    stacklevel: int,
) -> tuple[Any, Any]:
    """`spec` and `run` with the deprecated flat keyword arguments folded in, with a
    `DeprecationWarning` (`stacklevel` as `warnings.warn`'s, from the caller's frame)."""
    unknown = sorted(set(flat) - FLAT_FIELDS)
    if unknown:
        raise InvalidInputError(
            f"extract_records got unexpected keyword argument(s) {unknown}; what to extract"
            " goes in spec=ExtractionSpec(...), how to run it in run=RunOptions(...)"
        )
    spec_fields = {name: flat[name] for name in SPEC_FIELDS if name in flat}
    run_fields = {RUN_FIELDS[name]: flat[name] for name in RUN_FIELDS if name in flat}
    warnings.warn(
        f"extract_records({', '.join(f'{name}=' for name in flat)}...): pass"
        " spec=ExtractionSpec(...) and run=RunOptions(...) instead (docs/migrating.md)",
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )
    if (spec_fields and spec is not None) or (run_fields and run is not None):
        raise InvalidInputError(
            f"extract_records got {sorted(flat)} and the object they belong in: set them in"
            " spec=ExtractionSpec(...) or run=RunOptions(...)"
        )
    if spec_fields and spec is None and "schema" not in spec_fields:
        raise InvalidInputError(
            "extract_records needs spec=ExtractionSpec(schema=..., prompt=...): what to"
            " extract from each record"
        )
    if spec_fields:
        try:
            spec = ExtractionSpec(**spec_fields)
        except PromptTemplateError as exc:  # a run's bad input, as every other pre-flight one
            raise InvalidInputError(str(exc)) from exc
    if run_fields:
        run = RunOptions(**run_fields)
    return spec, run
