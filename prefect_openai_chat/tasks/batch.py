"""The module `extract_chunk` lived in as `extract_batch`; importing from it warns.

Use `prefect_openai_chat.tasks` (`extract_chunk`, `aextract_chunk`) instead.
"""

import warnings

from prefect_openai_chat.tasks.chunk import legacy_aextract_batch as aextract_batch
from prefect_openai_chat.tasks.chunk import legacy_extract_batch as extract_batch

warnings.warn(
    "prefect_openai_chat.tasks.batch is now prefect_openai_chat.tasks.chunk, and"
    " extract_batch is extract_chunk(chat_model, ExtractionSpec(...), records)"
    " (docs/migrating.md)",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["aextract_batch", "extract_batch"]
