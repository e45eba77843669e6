"""Crash and resume: SIGKILL a real `extract_records` process, run the same command again.

Each test starts `resume_child_support.py` (a real Python process running the flow
against the session's Prefect test API and a simulator in this process that logs every
request), kills it with SIGKILL at one moment, reads what it had finished (the record
cache), and runs the same command again. Then:

* every record ends exactly once, in the output or in the quarantine;
* the output files are whole (they parse, with the run's counts) and nothing is left
  beside them: no temporary file, no journal;
* the re-run sends no request for a record finished before the kill (the request log's
  bodies name their record), and sends one for every record that was not.

The moments: early (5% of the records finished), mid-run (50%, with a previous run's
output in place, which must survive the crash), near the end (90%), and between the two
moves of the journalled commit (output moved, quarantine not yet).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from soak_support import ROOT, soak_bench, tickets

from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.simulator.request_log import read_request_log

CHILD = Path(__file__).with_name("resume_child_support.py")
RECORDS = 400  # benchmarks/bench_crash_resume.py runs 2,000
MARK = re.compile(r"\[record ([A-Za-z0-9_-]+)\]")
RUN_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return tickets(RECORDS, seed=23)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    """A fast simulator with sloppy JSON (re-asks, quarantined records) and a request log."""
    log = tmp_path / "requests.jsonl"
    with Simulator(profile="sloppy-json", seed=23, ttft_s=0.01, request_log=str(log)) as server:
        yield server


@pytest.fixture
def api_url(prefect_harness: None) -> str:
    """The session's Prefect test API, for the child processes."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the Prefect test harness has no API URL"
    return str(url)


@dataclass
class Job:
    """One `extract_records` command and its files."""

    config: Path
    env: dict[str, str]
    output: Path
    quarantine: Path
    cache: Path
    log: Path

    def start(self, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(CHILD), str(self.config)],
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run(self) -> tuple[dict[str, Any], str]:
        """Run the command to the end; its summary and its output."""
        process = self.start()
        out, _ = process.communicate(timeout=RUN_TIMEOUT_S)
        assert process.returncode == 0, out[-3000:]
        (line,) = [x for x in out.splitlines() if x.startswith("SUMMARY ")]
        return json.loads(line[len("SUMMARY ") :]), out

    def finished(self) -> set[str]:
        """Keys of the records in the record cache: finished, outcome stored."""
        if not self.cache.exists():
            return set()
        with sqlite3.connect(self.cache, timeout=10) as db:
            try:
                rows = db.execute("SELECT outcome FROM records").fetchall()
            except sqlite3.OperationalError:  # the table is not made yet
                return set()
        return {str(json.loads(outcome)["key"]) for (outcome,) in rows}


def make_job(
    tmp_path: Path, sim: Simulator, api_url: str, records: list[dict[str, Any]], output: str
) -> Job:
    data, out, home = tmp_path / "data", tmp_path / "out", tmp_path / "prefect-home"
    for folder in (data, out, home):
        folder.mkdir()
    source = data / "records.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    job = Job(
        config=data / "config.json",
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(home),
            "PREFECT_LOGGING_LEVEL": "WARNING",
        },
        output=out / output,
        quarantine=out / "quarantine.jsonl",
        cache=data / "record-cache.sqlite",
        log=Path(str(sim.settings.request_log)),
    )
    config = {
        "base_url": sim.base_url,
        "api_key": sim.api_key,
        "source": str(source),
        "output": str(job.output),
        "quarantine": str(job.quarantine),
        "cache": str(job.cache),
        "batch_size": 50,
        "concurrency": 8,
    }
    job.config.write_text(json.dumps(config), encoding="utf-8")
    return job


def kill_when_finished(job: Job, share: float, total: int) -> set[str]:
    """Start the command, SIGKILL it once `share` of the records are finished; what was."""
    process = job.start()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while len(job.finished()) < share * total:
        if process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            pytest.fail(f"the run ended before {share:.0%} were finished:\n{out[-3000:]}")
        assert time.monotonic() < deadline, "the run did not get far enough in time"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=RUN_TIMEOUT_S)
    assert process.returncode == -signal.SIGKILL
    return job.finished()


def requested(entries: list[dict[str, Any]]) -> set[str]:
    """The records named by the requests of `entries`."""
    names = set()
    for entry in entries:
        match = MARK.search(entry["body"])
        assert match, f"a request that names no record: {entry['body'][:200]}"
        names.add(match.group(1))
    return names


def check_resumed(
    job: Job,
    records: list[dict[str, Any]],
    finished: set[str],
    requests_before: int,
    summary: dict[str, Any],
) -> None:
    """The re-run's files and requests, after a kill that left `finished` records done."""
    keys = {str(r["ticket_id"]) for r in records}
    counts, problems = soak_bench().check_run(records, job.output, job.quarantine, summary)
    assert problems == [], problems
    assert counts["lost"] == counts["duplicates"] == 0
    leftovers = sorted(p.name for p in job.output.parent.iterdir())
    assert leftovers == sorted([job.output.name, job.quarantine.name]), leftovers
    again = requested(read_request_log(job.log)[requests_before:])
    assert again & finished == set(), f"paid again: {sorted(again & finished)[:10]}"
    assert again == keys - finished  # every record not finished is asked for again


@pytest.mark.parametrize(
    ("moment", "share", "output"),
    [
        ("early", 0.05, "valid.jsonl"),
        ("mid-run", 0.5, "valid.parquet"),
        ("near the end", 0.9, "valid.sqlite"),
    ],
)
def test_a_killed_run_resumes_exactly_once_without_paying_twice(
    tmp_path: Path,
    sim: Simulator,
    api_url: str,
    records: list[dict[str, Any]],
    moment: str,
    share: float,
    output: str,
) -> None:
    job = make_job(tmp_path, sim, api_url, records, output)
    previous = None
    if moment == "mid-run":  # last night's output: a crash must leave it as it was
        job.output.write_bytes(b"last night's rows")
        previous = job.output.read_bytes()
    finished = kill_when_finished(job, share, len(records))
    assert share * len(records) <= len(finished) < len(records), (moment, len(finished))
    if previous is None:
        assert not job.output.exists(), "a killed run left a partial output in place"
    else:
        assert job.output.read_bytes() == previous
    assert not job.quarantine.exists()
    requests_before = len(read_request_log(job.log))

    summary, _ = job.run()
    check_resumed(job, records, finished, requests_before, summary)


def test_a_run_killed_between_the_two_commit_moves_is_finished_by_the_next(
    tmp_path: Path, sim: Simulator, api_url: str, records: list[dict[str, Any]]
) -> None:
    job = make_job(tmp_path, sim, api_url, records, "valid.jsonl")
    process = job.start(SOAK_KILL_BETWEEN_COMMITS="1")
    out, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    assert process.returncode == -signal.SIGKILL, out[-3000:]
    journal = job.output.with_name(f".{job.output.name}.commit")
    assert job.output.exists() and journal.exists() and not job.quarantine.exists()
    moves = json.loads(journal.read_text())["moves"]
    assert Path(moves[1][0]).exists(), "the quarantine's temporary file waits to be moved"
    finished = job.finished()
    assert len(finished) == len(records)
    requests_before = len(read_request_log(job.log))

    summary, said = job.run()
    assert "a commit interrupted by a crash" in said
    check_resumed(job, records, finished, requests_before, summary)
    assert len(read_request_log(job.log)) == requests_before  # nothing was paid again
