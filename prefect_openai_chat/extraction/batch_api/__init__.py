"""The OpenAI Batch API as a way to run a night's extractions at half the price, Prefect-free.

* `lines`: batch input lines, split by the API's limits and planned in waves by the
  model's enqueued-token limit.
* `outputs`: output and error files read back into `ChatResult`s by `custom_id`.
* `replay`: one record's extraction replayed over its batch answers, through the same
  parse, repair, validate and re-ask code as an online call.
* `ledger`: the batch ids of a run, written before any wait, so a restarted run resumes.
* `client`: upload, create, poll and download over an `AsyncOpenAI` client.
* `store`: the night's records and requests in a temporary SQLite file, read a page at
  a time (flat memory whatever the night's size).
* `options`: `BatchApiOptions`, how a run through the Batch API behaves.
* `night`: the whole run, record in, outcome out, every record exactly once.
"""

import warnings
from typing import Any

from prefect_openai_chat.extraction.batch_api.lines import (
    MAX_BATCH_BYTES,
    MAX_BATCH_REQUESTS,
    BatchLine,
    batch_line,
    plan_waves,
    split_lines,
)
from prefect_openai_chat.extraction.batch_api.night import BatchNight
from prefect_openai_chat.extraction.batch_api.options import BatchApiOptions

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_REQUESTS",
    "BatchApiOptions",
    "BatchLine",
    "BatchNight",
    "batch_line",
    "plan_waves",
    "split_lines",
]


def __getattr__(name: str) -> Any:
    """`BatchOptions`, the old name of `BatchApiOptions`, with a `DeprecationWarning`."""
    if name == "BatchOptions":
        warnings.warn(
            "BatchOptions is now BatchApiOptions (docs/migrating.md)",
            DeprecationWarning,
            stacklevel=2,
        )
        return BatchApiOptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
