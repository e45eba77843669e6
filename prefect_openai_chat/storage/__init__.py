"""Files on object storage (S3, GCS, Azure Blob, any fsspec URL) for sources and outputs.

`urls.py` turns a URL into a `Location` (an fsspec filesystem and a path on it) and
opens it for reading in chunks (an S3 object through `stream.py`: one streaming GET a
pass); `objects.py` publishes a run's outputs on a store
without an atomic rename (temporary objects, a journal, copies). Local paths never come
here: `flows/sources.py` and `flows/sinks.py` keep their own code for them (flock,
rename, fsync). This package never imports Prefect.
"""

from prefect_openai_chat.storage.objects import (
    commit_objects,
    finish_objects,
    journal_for,
    recover_objects,
    stage_objects,
    temporary_for,
)
from prefect_openai_chat.storage.urls import (
    BLOCK_SIZE,
    EXTRAS,
    PART_SIZE,
    Location,
    is_url,
    local_path,
    locate,
    masked_options,
    plain_options,
)

__all__ = [
    "BLOCK_SIZE",
    "EXTRAS",
    "PART_SIZE",
    "Location",
    "commit_objects",
    "finish_objects",
    "is_url",
    "journal_for",
    "local_path",
    "locate",
    "masked_options",
    "plain_options",
    "recover_objects",
    "stage_objects",
    "temporary_for",
]
