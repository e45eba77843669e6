"""A finished Batch API night deletes its files from the account's storage, or keeps them.

The API keeps every uploaded and result file until it is deleted, and they count against
the organization's storage: a nightly night that leaves its files behind fills it up.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from batch_flow_support import run_night, tickets
from test_batch_night import ended_once

from prefect_openai_chat.simulator import Simulator

pytestmark = pytest.mark.usefixtures("isolated_results")


def warnings_of(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_a_finished_night_deletes_its_files_and_keep_files_keeps_them(
    batch_sim: Simulator, tmp_path: Path
) -> None:
    records = tickets(12)
    batch_sim.configure(batch_faults=["output-and-error"])  # an error file beside the output
    summary = run_night(batch_sim, tmp_path / "night", records, cache=False)
    ended_once(tmp_path / "night", records)
    stats = batch_sim.stats()
    assert summary["batch_records"] == 12 and stats.batches_created == 1
    # the input file, the output file and the error file: every one deleted
    assert (stats.files_uploaded, stats.files_deleted, stats.files_stored) == (1, 3, 0)

    kept = run_night(
        batch_sim, tmp_path / "kept", records, cache=False, batch_options={"keep_files": True}
    )
    ended_once(tmp_path / "kept", records)
    stats = batch_sim.stats()
    assert kept["batch_records"] == 12 and stats.batches_created == 2
    assert (stats.files_uploaded, stats.files_deleted, stats.files_stored) == (2, 3, 3)


def test_a_key_that_may_not_delete_files_leaves_them_with_a_warning_and_the_night_stands(
    batch_sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A restricted key without the `api.files.write` scope (403): the files stay, each
    named in a warning; every record has ended as if they had been deleted."""
    records = tickets(6)
    batch_sim.configure(batch_faults=["files-read-only"])
    with caplog.at_level(logging.WARNING):
        summary = run_night(batch_sim, tmp_path / "night", records, cache=False)
    rows, bad = ended_once(tmp_path / "night", records)
    assert summary["valid"] == len(rows) == 6 and not bad
    stats = batch_sim.stats()
    assert stats.by_status.get(403) == 2  # the input and the output file, each asked once
    assert (stats.files_deleted, stats.files_stored) == (0, 2)
    said = warnings_of(caplog)
    assert said.count("a file could not be deleted") == 2
    assert "PermissionDeniedError" in said and "api.files.write" in said
