"""The chaos soak, short: `benchmarks/bench_chaos_soak.py`'s run and checks on 400 records.

The `extract_records` flow runs over 400 sample tickets against the simulator's `chaos`
profile (every fault at once, rate limits, a 2 s outage refusing connections, started once
the run has made 40 requests), with the hangs and stalls shortened to 1 s and a retry
policy that waits little. The soak checks what the benchmark checks at 10,000 records:
output + quarantine = input, no key lost or twice, a reason for every quarantined record,
and the requests the simulator logged within the retry policy's bound, per record and in
total.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from soak_support import benchmark, tickets

from prefect_openai_chat import ChatModel, OpenAICredentials
from prefect_openai_chat.simulator import Simulator

RECORDS = 400


@pytest.mark.slow  # ~10 s: started early, not last
def test_chaos_soak_keeps_every_record_exactly_once_within_the_request_bound(
    tmp_path: Path, isolated_results: None
) -> None:
    soak = benchmark("bench_chaos_soak")
    records = tickets(RECORDS, seed=31)
    log = tmp_path / "requests.jsonl"
    with Simulator(profile="chaos", seed=31, hang_s=1.0, stall_s=1.0, request_log=str(log)) as sim:
        model = ChatModel(
            credentials=OpenAICredentials(base_url=sim.base_url, api_key=sim.api_key),
            model="gpt-4o-mini-2024-07-18",
            task_retry_delay_s=0.2,
            timeouts={"read_s": 3.0},
            retries={"backoff_base_s": 0.05, "backoff_cap_s": 0.2},
            circuit={"reset_timeout_s": 0.5},
        )
        report = soak.soak(records, tmp_path, model, sim, log)
    assert report.problems == [], "\n".join(report.lines())
    assert (report.records, report.lost, report.duplicates) == (RECORDS, 0, 0)
    assert report.valid + report.quarantined == RECORDS
    assert report.without_reason == 0
    assert report.by_fault.get("outage", 0) > 0, "the outage did not happen during the run"
    assert report.requests <= report.requests_bound
    assert report.busiest_record <= report.bound.per_record == 60
