"""Crash and resume: SIGKILL a real `extract_records` process, run the same command again.

The scenarios are `benchmarks/bench_crash_resume.py`'s (read its docstring): a child
process runs the flow against the session's Prefect test API and a simulator that logs
every request; it is SIGKILLed early (5% of the records finished), mid-run (50%, with last
night's output in place), near the end (90%) and between the two moves of the journalled
commit; the same command then runs again, and the scenario checks exactly-once output,
whole files with nothing left beside them, and that no record finished before the kill is
asked for again (while every other record is). Here on 200 records; the benchmark runs
2,000.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from soak_support import benchmark, tickets

from prefect_openai_chat.simulator import Simulator

pytestmark = pytest.mark.slow  # real processes killed and run again

RECORDS = 200


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return tickets(RECORDS, seed=23)


@pytest.fixture
def api_url(prefect_harness: None) -> str:
    """The session's Prefect test API, for the child processes."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the Prefect test harness has no API URL"
    return str(url)


# Here two moments: mid-run and the commit; the benchmark kills at all four on 2,000 records.
@pytest.mark.parametrize("moment", ["mid-run", "commit"])
def test_a_killed_run_resumes_exactly_once_without_paying_twice(
    tmp_path: Path, api_url: str, records: list[dict[str, Any]], moment: str
) -> None:
    scenarios = benchmark("bench_crash_resume")
    log = tmp_path / "requests.jsonl"
    with Simulator(profile="sloppy-json", seed=23, ttft_s=0.01, request_log=str(log)) as sim:
        report = scenarios.crash_and_resume(moment, records, tmp_path / "run", sim, api_url)
    assert report.problems == [], report.line()
    assert report.lost == report.duplicates == report.paid_again == 0
    assert report.leftovers == []
    if moment == "commit":
        assert report.finished_at_kill == len(records)
        assert report.rerun_requests == 0  # everything was finished: nothing paid again
    else:
        assert 0 < report.finished_at_kill < len(records)
        assert report.rerun_requests >= len(records) - report.finished_at_kill
