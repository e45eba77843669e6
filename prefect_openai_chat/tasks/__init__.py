"""Prefect tasks: one call, one stream, one extraction, one chunk of records.

Besides the tasks, what the flows build on: the cache key (`extraction_key`), the
record ledger a `cache=` setting names (`record_ledger`, `ledger_path`), the shared
concurrency gates (`share_concurrency`, `gate_for`), the one event loop of a run's
sync chunks (`shared_loop`) and the call the extraction loop
sends through (`runner_call`).
"""

import warnings
from typing import Any

from prefect_openai_chat.tasks._common import (
    assemble,
    default_cache_path,
    ledger_path,
    record_ledger,
    run_logger,
)
from prefect_openai_chat.tasks.chat import (
    achat_completion,
    astream_chat_completion,
    chat_completion,
    stream_chat_completion,
)
from prefect_openai_chat.tasks.chunk import aextract_chunk, extract_chunk
from prefect_openai_chat.tasks.extract import aextract, extract, extraction_key, runner_call
from prefect_openai_chat.tasks.run_sharing import gate_for, share_concurrency, shared_loop

__all__ = [
    "achat_completion",
    "aextract",
    "aextract_chunk",
    "assemble",
    "astream_chat_completion",
    "chat_completion",
    "default_cache_path",
    "extract",
    "extract_chunk",
    "extraction_key",
    "gate_for",
    "ledger_path",
    "record_ledger",
    "run_logger",
    "runner_call",
    "share_concurrency",
    "shared_loop",
    "stream_chat_completion",
]

_RENAMED = {"extract_batch": "extract_chunk", "aextract_batch": "aextract_chunk"}


def __getattr__(name: str) -> Any:
    """`extract_batch` and `aextract_batch`, the names before `extract_chunk`, with a
    `DeprecationWarning`; they still take the spec's fields as keyword arguments."""
    if name in _RENAMED:
        from prefect_openai_chat.tasks import chunk

        warnings.warn(
            f"{name} is now {_RENAMED[name]}(chat_model, ExtractionSpec(...), records)"
            " (docs/migrating.md)",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(chunk, f"legacy_{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
