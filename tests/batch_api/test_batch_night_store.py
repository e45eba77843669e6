"""The night's store on disk: a killed night's file is removed by the next night."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prefect_openai_chat.extraction.batch_api.store import NightStore


def test_a_killed_nights_folder_is_removed_by_the_next_night_and_a_live_ones_kept(
    tmp_path: Path,
) -> None:
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    dead = tmp_path / f"batch-night-{int(ended.stdout)}-abc"
    dead.mkdir()
    (dead / "night.sqlite").write_bytes(b"x" * 1024)
    live = NightStore(tmp_path)
    try:
        assert not dead.exists()
        other = NightStore(tmp_path)  # this process is alive: its folders stay
        assert live.folder.exists() and other.folder.exists()
        other.close()
        assert not other.folder.exists()
    finally:
        live.close()
