"""Write valid rows (JSONL, CSV, Parquet or SQLite, by extension) and quarantined records.

Each sink writes to a temporary file beside its target (`.<name>.tmp-<pid>`) and moves
it into place only when the run completes, so a crashed run never leaves half a file
and a re-run never duplicates rows. `open_outputs` moves a run's output and quarantine
as one step: a journal naming both moves is written first, and a run that finds a
journal left by a crash finishes those moves before it starts (`recover_outputs`),
then removes temporaries of processes that are gone.

A target on object storage (`s3://...`, any fsspec URL: a `Location`) is written to a
local temporary file the same way, then published by `storage.commit_objects`
(temporary objects, a journal object, copies); there is no lock there (see
`hold_outputs`).

The code lives in `flows/outputs/`, a module per concern (`paths`: the checks;
`locks`: one run per output; `sink`, `tables`, `csv_rows`: the formats; `commit`: the
commit and its recovery); this module opens a run's sinks and re-exports their names.

Example:
    >>> import tempfile, os
    >>> from prefect_openai_chat.flows.sinks import open_sink
    >>> path = os.path.join(tempfile.mkdtemp(), "rows.jsonl")
    >>> with open_sink(path) as sink:
    ...     sink.write({"id": 1})
    >>> open(path).read()
    '{"id": 1}\\n'
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel

from prefect_openai_chat.flows.outputs.commit import (
    commit,
    recover_outputs,
    temporary_path,
)
from prefect_openai_chat.flows.outputs.csv_rows import CsvSink, nullable_columns, read_csv_rows
from prefect_openai_chat.flows.outputs.locks import hold_outputs
from prefect_openai_chat.flows.outputs.paths import (
    SUFFIXES,
    Target,
    check_distinct,
    check_writable,
    journal_path,
    lock_path,
)
from prefect_openai_chat.flows.outputs.sink import JsonlSink, RowNotStorable, Sink, json_text
from prefect_openai_chat.flows.outputs.tables import (
    ParquetSink,
    SqliteSink,
    check_sqlite_columns,
    columns_of,
)
from prefect_openai_chat.storage import Location
from prefect_openai_chat.tasks import run_logger

__all__ = [
    "QUARANTINE_COLUMNS",
    "SUFFIXES",
    "CsvSink",
    "JsonlSink",
    "ParquetSink",
    "RowNotStorable",
    "Sink",
    "SqliteSink",
    "Target",
    "check_distinct",
    "check_sqlite_columns",
    "check_writable",
    "columns_of",
    "commit",
    "hold_outputs",
    "journal_path",
    "json_text",
    "lock_path",
    "nullable_columns",
    "open_outputs",
    "open_quarantine",
    "open_sink",
    "read_csv_rows",
    "recover_outputs",
    "temporary_path",
]


def open_sink(
    path: str | Path | Location,
    schema: type[BaseModel] | None = None,
    key_column: str = "_key",
    columns: dict[str, str] | None = None,
) -> Sink:
    """The sink for `path`'s extension: JSONL, CSV, Parquet or SQLite.

    Flat formats get `columns` (name -> kind), else the schema's fields after `key_column`.
    """
    target = path if isinstance(path, Location) else Path(path)
    suffix = target.suffix.lower()
    if suffix == ".parquet":
        return ParquetSink(target, columns or columns_of(schema, key_column))
    if suffix in (".sqlite", ".db"):
        return SqliteSink(target, columns or columns_of(schema, key_column))
    if suffix == ".csv":
        return CsvSink(target, columns or columns_of(schema, key_column), nullable_columns(schema))
    return JsonlSink(target)


# Every quarantine row, in every format; `record` is JSON text in Parquet and SQLite.
QUARANTINE_COLUMNS = {
    "line": "integer",
    "key": "string",
    "reason": "string",
    "outcome": "string",
    "attempts": "integer",
    "record": "json",
    "last_raw_output": "string",
}


def open_quarantine(path: str | Path | Location) -> Sink:
    """The quarantine sink: full rows in every format, raw outputs capped."""
    sink = open_sink(path, columns=QUARANTINE_COLUMNS)
    sink.capped = ("last_raw_output",)
    sink.strict = False  # the input record as it came, never refused
    return sink


@contextmanager
def open_outputs(
    output: Target, quarantine: Target, schema: type[BaseModel] | None = None
) -> Iterator[tuple[Sink, Sink]]:
    """The output and quarantine sinks of a run, moved into place together on a clean exit.

    Holds both files' locks from the start to the end of the commit (`hold_outputs`): a
    second run on either is refused. First finishes what a crashed run left (see
    `recover_outputs`). On an exception both temporaries are dropped and both targets
    stay as they were.
    """
    with hold_outputs(output, quarantine):
        for line in recover_outputs(output, quarantine):
            run_logger().warning("%s", line)
        rows = open_sink(output, schema)
        try:
            bad = open_quarantine(quarantine)
        except BaseException:
            rows.discard()
            raise
        try:
            yield rows, bad
        except BaseException:
            rows.discard()
            bad.discard()
            raise
        commit([rows, bad], journal_path(output))
