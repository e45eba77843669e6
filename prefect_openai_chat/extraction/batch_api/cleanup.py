"""Delete a finished night's files from the account's storage: the input files it uploaded
and its batches' output and error files.

The API keeps every file until it is deleted, and the files count against the
organization's storage: a million-record night of the sample tickets uploads about 1.2
GB of input files and gets about 3.2 GB of result files back, every night. Once every
record has ended (its outcome written out and in the record ledger, the run's batch
ledger removed) nothing reads them again, so the night deletes them;
`BatchApiOptions(keep_files=True)` keeps them. Deleting is best effort: a file that
cannot be deleted stays, named in a note, and the night's outcome does not change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefect_openai_chat.extraction.batch_api.client import BatchClient
from prefect_openai_chat.redaction import redact_text


async def delete_files(
    client: BatchClient, batches: Sequence[Mapping[str, Any]]
) -> tuple[int, list[str]]:
    """Delete the input, output and error files of `batches` (the run's ledger entries).

    Returns how many files were deleted, and a note for each that could not be (a file
    already gone counts as neither).
    """
    deleted, notes = 0, []
    for entry in batches:
        batch_id = entry["batch_id"]
        file_ids = [entry.get("input_file_id")]
        try:
            batch = await client.retrieve(batch_id)
            file_ids += [batch.output_file_id, batch.error_file_id]
        except Exception as exc:  # best effort: a cleanup never fails a finished night
            notes.append(f"batch {batch_id}: not read, its result files stay ({_said(exc)})")
        for file_id in dict.fromkeys(f for f in file_ids if f):
            try:
                deleted += await client.delete(file_id)
            except Exception as exc:
                notes.append(f"batch {batch_id}: file {file_id} stays ({_said(exc)})")
    return deleted, [redact_text(note)[:300] for note in notes]


def _said(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"
