"""A run killed while it waits for its batch resumes that batch when restarted: it pays once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from batch_flow_support import read_rows, recorded_batches, run_night, tickets

from prefect_openai_chat.simulator import Simulator

pytestmark = pytest.mark.usefixtures("isolated_results")

NIGHT = """
import sys
from types import SimpleNamespace
sys.path.insert(0, sys.argv[1])
from batch_flow_support import run_night, tickets
from pathlib import Path
sim = SimpleNamespace(base_url=sys.argv[2], api_key="sk-simulator")
run_night(sim, Path(sys.argv[3]), tickets(10), cache=sys.argv[4])
"""


def test_a_killed_run_resumes_its_batch_instead_of_submitting_again(
    batch_sim: Simulator, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL

    batch_sim.configure(batch_duration_s=600.0)  # the batch outlives the first process
    cache = tmp_path / "cache" / "records.sqlite"
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    here = str(Path(__file__).parent)
    args = [here, batch_sim.base_url, str(tmp_path / "out"), str(cache)]
    process = subprocess.Popen([sys.executable, "-c", NIGHT, *args], env=env)
    try:
        deadline = time.monotonic() + 120
        while not recorded_batches(cache):
            assert process.poll() is None, "the first run ended before it waited"
            assert time.monotonic() < deadline, "the first run never recorded its batch"
            time.sleep(0.1)
        assert batch_sim.stats().batches_created == 1
    finally:
        process.kill()
        process.wait(30)
    assert read_rows(tmp_path / "out" / "rows.jsonl") == []

    batch_sim.configure(batch_duration_s=0.3)  # the same batch now ends soon
    summary = run_night(batch_sim, tmp_path / "out", tickets(10), cache=str(cache))
    stats = batch_sim.stats()
    assert (stats.files_uploaded, stats.batches_created, stats.batch_requests) == (1, 1, 10)
    assert summary["records"] == 10 == summary["batch_records"] and stats.requests == 0
    assert len(read_rows(tmp_path / "out" / "rows.jsonl")) == summary["valid"]
