"""The night's store on disk: a killed night's file is removed by the next night; the run's
key is hashed from the store's keys as they are read, never all held at once."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from prefect_openai_chat.extraction.batch_api.ledger import run_key
from prefect_openai_chat.extraction.batch_api.store import NightStore, pack
from prefect_openai_chat.flows.batch_api import _keys


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


def test_the_run_key_is_hashed_from_the_store_s_keys_without_holding_them(tmp_path: Path) -> None:
    store = NightStore(tmp_path)
    count = 60_000
    try:
        keys = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(count)]
        store.add_works([(key, pack(None), n) for n, key in enumerate(keys)])
        expected = run_key("gpt-4o-mini", "http://x", keys)  # a list: sorted here
        del keys
        tracemalloc.start()
        try:
            found = run_key("gpt-4o-mini", "http://x", _keys(store))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        store.close()
    assert found == expected
    # 60,000 keys held at once for sorting took about 10 MB; a page at a time, well under 2
    assert peak < 2_000_000, f"peak {peak} bytes while hashing {count} keys"


def test_keys_given_out_of_order_by_an_iterator_are_refused() -> None:
    with pytest.raises(ValueError, match="out of order"):
        run_key("gpt-4o-mini", "http://x", iter(["b", "a"]))
