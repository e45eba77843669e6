"""`RunOptions`: how an `extract_records` run goes, with invalid combinations refused.

What to extract is the `ExtractionSpec`; this is the rest: the chunk size and the
concurrency, the record ledger, online or through the OpenAI Batch API (with its
`BatchApiOptions`), shards, storage options and what the run returns. A combination
that cannot run (Batch API shards without a record ledger, per-record task runs through
the Batch API, rows returned from shards) is refused when the object is made, with what
to do instead.

Prefect shows it as a nested form in the UI; a deployment passes it as plain JSON.

Example:
    >>> from prefect_openai_chat.flows.options import RunOptions
    >>> RunOptions(via="batch", batch_api={"poll_interval_s": 60}).batch_api.poll_interval_s
    60.0
    >>> try:
    ...     RunOptions(shards=4, via="batch", cache=False)
    ... except ValueError as exc:
    ...     print("keep cache on" in str(exc))
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from prefect_openai_chat.blocks.storage_options import StorageOptions
from prefect_openai_chat.checked_model import CheckedModel
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction.batch_api import BatchApiOptions


def _path_as_text(cache: Any) -> Any:
    """A SQLite path as text (the form a shard and a deployment get)."""
    return str(cache) if isinstance(cache, Path) else cache


class RunOptions(CheckedModel):
    """How to run an extraction: every field has a default; bad combinations are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    chunk_size: int = Field(
        default=500,
        description="Records per `extract_chunk` task run (the unit of task runs in the UI;"
        " each task run costs the Prefect API server about 30 ms of CPU).",
    )
    concurrency: int = Field(
        default=16,
        description="The most HTTP calls in flight over the whole run (per shard with shards).",
    )
    cache: Annotated[bool | str, BeforeValidator(_path_as_text)] = Field(
        default=True,
        description="The record ledger: true for the default (PREFECT_OPENAI_CHAT_CACHE, else"
        " a SQLite file under PREFECT_HOME), a SQLite path, a postgresql:// URL shared by"
        " every worker, or false for none.",
    )
    via: Literal["online", "batch"] = Field(
        default="online",
        description="online (answers now) or batch: the OpenAI Batch API, at half the price,"
        " answered within 24 hours.",
    )
    batch_api: BatchApiOptions | None = Field(
        default=None, description="With via='batch': how the Batch API run behaves."
    )
    per_record_tasks: bool = Field(
        default=False,
        description="One task run per record, each visible in the UI (small inputs, online).",
    )
    shards: int = Field(
        default=1,
        description="Split a file source into this many line ranges, each run by its own worker.",
    )
    shard_deployment: str | None = Field(
        default=None,
        description="The deployment that runs one shard ('extract-records-shard/shard');"
        " without it the shards are tasks of this flow's task runner.",
    )
    allow_local_paths: bool = Field(
        default=False,
        description="With shard_deployment: run although the ledger is a SQLite file or the"
        " paths are local, because every worker sees them.",
    )
    storage_options: StorageOptions = Field(
        default=None,
        description="fsspec storage_options for URLs (key, secret, client_kwargs, ...;"
        " masked in the flow run's parameters), or a prefect-aws, prefect-gcp or"
        " prefect-azure credentials block, or its saved name 'aws-credentials/etl'.",
    )
    return_rows: bool = Field(
        default=False,
        description="Add the valid rows to the summary as `rows` (held in memory; not with"
        " shards).",
    )

    @model_validator(mode="after")
    def _check(self) -> RunOptions:
        if self.chunk_size < 1 or self.concurrency < 1:
            raise InvalidInputError("chunk_size and concurrency must be at least 1")
        if self.shards < 1:
            raise InvalidInputError(f"shards must be at least 1, got {self.shards}")
        if self.via == "batch" and self.per_record_tasks:
            raise InvalidInputError("per_record_tasks=True runs records online; use via='online'")
        if self.batch_api is not None and self.via != "batch":
            raise InvalidInputError(
                "batch_api options are for via='batch': set via='batch', or drop batch_api"
            )
        if self.sharded:
            if self.return_rows:
                raise InvalidInputError(
                    "return_rows=True keeps the rows of one process; a sharded run's rows are"
                    " in its output: read the output file instead, or run with shards=1"
                )
            if self.via == "batch" and self.cache is False:
                raise InvalidInputError(
                    "Batch API shards claim their requests in the record ledger, so that two"
                    " shards never pay for one request: keep cache on (a postgresql:// URL"
                    " shared by every worker), or run with shards=1"
                )
            if self.per_record_tasks:
                raise InvalidInputError(
                    "shards run records in chunks: use per_record_tasks=False with shards, or"
                    " shards=1 for per-record task runs"
                )
        return self

    @property
    def sharded(self) -> bool:
        """Whether the run fans out over shards (`shards` > 1 or a shard deployment)."""
        return self.shards != 1 or self.shard_deployment is not None

    @property
    def batch_api_options(self) -> BatchApiOptions:
        """The Batch API options, their defaults when none were given."""
        return self.batch_api or BatchApiOptions()

    def for_shard(self) -> RunOptions:
        """What one shard of this run is told: the same, run unsharded in its own process."""
        return self.model_copy(
            update={"shards": 1, "shard_deployment": None, "allow_local_paths": False}
        )
