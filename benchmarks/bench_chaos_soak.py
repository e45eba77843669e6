"""Chaos soak: the `extract_records` flow over 10,000 records on the `chaos` profile.

The simulator (its own process, seed 5) answers with every fault at once: 429s, 5xx,
resets, hangs, stalls, cut bodies, sloppy JSON, refusals, content filter, an insufficient
quota now and then, rate limits (600 requests and 200,000 tokens per 6 s "minute") and a
2 s outage that refuses connections (the profile's, moved from 5 s after the simulator's
start to when the run has made a tenth as many requests as there are records, so that it
falls inside the run). The flow runs with the `ChatModel`'s default retry policy and a
fresh record cache, and the run is checked:

* every record ends exactly once: output + quarantine = input, no key lost, no key twice;
* every quarantined record says why (a non-empty `reason`);
* the requests the simulator saw (its request log) stay within what the retry policy
  promises. Per record: `max_attempts` HTTP attempts per logical call, times the logical
  calls of one extraction (the first answer, `max_reprompts` re-asks and
  `max_length_retries` re-sends with more room), times the task tier's rounds
  (`task_retries + 1`): 4 x 5 x 3 = 60 with the defaults. Not counted, by design: 429
  `rate_limit_exceeded` answers (pacing, bounded in time by `rate_limit_patience_s`, not in
  number) and circuit probes that fail while the outage lasts (bounded by one per
  `circuit_reset_timeout_s`). Checked per record (the request log's bodies name the
  record) and in total.

Printed: records, valid, quarantined, lost (must be 0), duplicates (must be 0), requests
seen vs the bound, wall time, and the peak RSS of this process (which runs the flow;
`resource.getrusage(RUSAGE_SELF).ru_maxrss`, read right after the flow returns) against
the documented bound for 10,000 records. Exits 1 when an invariant fails.

Run: python benchmarks/bench_chaos_soak.py [--records 10000] [--seed 5]

`tests/reliability_soak/test_chaos_short.py` runs the same `soak` on 400 records.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import re
import resource
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RSS_BOUND_MIB = 512  # documented in docs/reliability.md: peak RSS of a 10,000-record run
SCHEMA = "prefect_openai_chat.examples.tickets:SupportTicket"
PROMPT = "[record {ticket_id}]\nSubject: {subject}\n\n{body}"  # bodies name their record
MARK = re.compile(r"\[record ([A-Za-z0-9_-]+)\]")
MAX_REPROMPTS = 2  # extract_records' default


@dataclass
class Bound:
    """What the retry policy promises about requests, and how it was derived."""

    max_attempts: int
    calls_per_record: int
    rounds: int

    @property
    def per_record(self) -> int:
        """HTTP attempts one record can cost, 429s and failed probes aside."""
        return self.max_attempts * self.calls_per_record * self.rounds

    def explain(self) -> str:
        return (
            f"{self.max_attempts} attempts per call x {self.calls_per_record} calls per record"
            f" x {self.rounds} task-tier rounds = {self.per_record} per record"
        )


def policy_bound(model: Any, max_reprompts: int = MAX_REPROMPTS) -> Bound:
    """The per-record bound, from the block's policy and the extraction loop's own defaults."""
    from prefect_openai_chat.extraction import ExtractionOptions

    policy = model.retry_policy()
    length = ExtractionOptions(model="bound").max_length_retries
    return Bound(policy.max_attempts, 1 + max_reprompts + int(length), policy.task_retries + 1)


@dataclass
class SoakReport:
    """What one soak run did, and what was wrong with it (`problems`, empty when sound)."""

    records: int
    valid: int
    quarantined: int
    lost: int
    duplicates: int
    without_reason: int
    requests: int
    requests_bound: int
    paced_429: int
    outage_requests: int
    busiest_record: int
    bound: Bound
    wall_s: float
    rss_before_mib: float
    peak_rss_mib: float
    summary: dict[str, Any]
    by_fault: dict[str, int]
    outage_at_s: float | None
    reasons: dict[str, int]
    faults: dict[str, FaultFigures] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def lines(self) -> Iterator[str]:
        """The report as printed."""
        yield f"records          {self.records:>9,}"
        yield f"valid            {self.valid:>9,}"
        yield f"quarantined      {self.quarantined:>9,}"
        yield f"lost             {self.lost:>9,}   (must be 0)"
        yield f"duplicates       {self.duplicates:>9,}   (must be 0)"
        yield f"no reason given  {self.without_reason:>9,}   (must be 0)"
        yield (
            f"requests seen    {self.requests:>9,}   bound {self.requests_bound:,}"
            f" = {self.records:,} records x {self.bound.per_record}"
            f" + {self.paced_429:,} 429 pacing answers + {self.outage_requests:,} outage"
            " answers (failed probes among them)"
        )
        yield (
            f"per record       {self.busiest_record:>9,}   most requests for one record"
            f" (429s aside); bound {self.bound.explain()}"
        )
        yield f"wall time        {self.wall_s:>9.1f} s"
        yield (
            f"peak RSS         {self.peak_rss_mib:>9.1f} MiB   (this process, which ran the"
            f" flow; bound for 10,000 records: {RSS_BOUND_MIB} MiB; {self.rss_before_mib:.1f} MiB"
            " when the flow started)"
        )
        if self.outage_at_s is not None:
            yield f"outage           started {self.outage_at_s:.1f} s into the run"
        yield f"faults injected  {json.dumps(self.by_fault, sort_keys=True)}"
        yield "per fault: injected, records hit, their requests (all), valid, quarantined"
        for name, f in self.faults.items():
            yield (
                f"  {name:15s} {f.injected:>6,} {f.records:>6,} {f.requests:>7,}"
                f" {f.valid:>6,} {f.quarantined:>5,}"
            )
        top = sorted(self.reasons.items(), key=lambda kv: -kv[1])[:8]
        yield "quarantine reasons (most common first):"
        for reason, count in top:
            yield f"  {count:>6,}  {reason}"


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL, Parquet or SQLite output, each as a dict."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_table(path).to_pylist())
    if path.suffix in (".sqlite", ".db"):
        with sqlite3.connect(path) as db:
            db.row_factory = sqlite3.Row
            return [dict(row) for row in db.execute("SELECT * FROM records")]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@dataclass
class FaultFigures:
    """One fault over a run: how often it was injected, and what the records it hit cost."""

    injected: int = 0
    records: int = 0  # records that met it at least once
    requests: int = 0  # every request of those records, 429s included
    valid: int = 0
    quarantined: int = 0


def per_fault(log: Path, valid_keys: set[str]) -> dict[str, FaultFigures]:
    """For each fault in the request log: the records it hit, their requests and outcomes."""
    hit: dict[str, set[str]] = collections.defaultdict(set)
    injected: collections.Counter[str] = collections.Counter()
    requests: collections.Counter[str] = collections.Counter()
    with log.open(encoding="utf-8") as handle:
        for line in handle:
            entry = json.loads(line)
            match = MARK.search(entry["body"])
            key = match.group(1) if match else "?"
            requests[key] += 1
            faults = list(entry["faults"]) or (["rate-limit"] if entry["status"] == 429 else [])
            for fault in faults:
                injected[fault] += 1
                hit[fault].add(key)
    figures = {}
    for fault, keys in sorted(hit.items()):
        ok = len(keys & valid_keys)
        figures[fault] = FaultFigures(
            injected[fault], len(keys), sum(requests[k] for k in keys), ok, len(keys) - ok
        )
    return figures


def requests_by_record(log: Path) -> tuple[dict[str, int], int, int, int, int]:
    """Per record: requests that count against the bound; and the total, 429s, outage, unnamed."""
    per_record: collections.Counter[str] = collections.Counter()
    total = paced = outage = unnamed = 0
    with log.open(encoding="utf-8") as handle:
        for line in handle:
            entry = json.loads(line)
            total += 1
            if entry["faults"] == ["outage"]:
                outage += 1
            if entry["status"] == 429 and "quota" not in entry["faults"]:
                paced += 1  # rate_limit_exceeded: pacing; a quota 429 ends the call, counted
                continue
            match = MARK.search(entry["body"])
            if match is None:
                unnamed += 1
                continue
            per_record[match.group(1)] += 1
    return dict(per_record), total, paced, outage, unnamed


def check_run(
    records: list[dict[str, Any]], output: Path, quarantine: Path, summary: dict[str, Any]
) -> tuple[dict[str, int], list[str]]:
    """Exactly-once checks of one finished run: (counts, problems)."""
    problems: list[str] = []
    keys_in = [str(r["ticket_id"]) for r in records]
    rows = read_rows(output) if output.exists() else []
    bad = read_rows(quarantine) if quarantine.exists() else []
    seen = collections.Counter([str(r["_key"]) for r in rows] + [str(r["key"]) for r in bad])
    lost = set(keys_in) - set(seen)
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    strangers = set(seen) - set(keys_in)
    without_reason = sum(1 for r in bad if not str(r.get("reason") or "").strip())
    if len(rows) + len(bad) != len(records):
        problems.append(f"{len(rows)} rows + {len(bad)} quarantined != {len(records)} records")
    if lost:
        problems.append(f"{len(lost)} records lost, e.g. {sorted(lost)[:5]}")
    if duplicates:
        problems.append(f"{duplicates} duplicate keys")
    if strangers:
        problems.append(f"keys that were not in the input: {sorted(strangers)[:5]}")
    if without_reason:
        problems.append(f"{without_reason} quarantined records without a reason")
    expected = (summary.get("records"), summary.get("valid"), summary.get("quarantined"))
    if expected != (len(records), len(rows), len(bad)):
        problems.append(f"summary says {expected}, files hold {len(rows)} + {len(bad)}")
    counts = {
        "valid": len(rows),
        "quarantined": len(bad),
        "lost": len(lost),
        "duplicates": duplicates,
        "without_reason": without_reason,
    }
    return counts, problems


class OutageMidRun:
    """The profile's outage, started once the run has made `at_request` requests.

    A profile times its outage from the simulator's start (5 s in, for `chaos`); how long
    a flow takes to send its first request depends on the machine, so the soak moves the
    same window (same length and mode) to a point inside the run.
    """

    def __init__(self, sim: Any, at_request: int) -> None:
        self.sim, self.at_request = sim, at_request
        windows = sim.settings.outages
        self.windows = [
            w.model_copy(update={"start_s": 0.0, "end_s": (w.end_s or 0.0) - (w.start_s or 0.0)})
            for w in windows
            if w.start_s is not None
        ]
        self.started_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> OutageMidRun:
        self.sim.configure(outages=[])
        self.sim.reset()
        if self.windows:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            if self.sim.stats().requests >= self.at_request:
                self.sim.configure(outages=self.windows)  # timed from now
                self.started_at = time.perf_counter()
                return


def soak(
    records: list[dict[str, Any]],
    folder: Path,
    model: Any,
    sim: Any,
    request_log: Path,
    batch_size: int = 100,
    concurrency: int = 16,
) -> SoakReport:
    """Run `extract_records` over `records` with `model` on `sim` (logging its requests to
    `request_log`), then check the outputs and the requests against the policy's bound.

    The profile's outage starts when the run has made a tenth of `len(records)` requests.
    """
    from prefect_openai_chat import ExtractionSpec, RunOptions
    from prefect_openai_chat.flows import extract_records

    source = folder / "records.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    output, quarantine = folder / "valid.jsonl", folder / "quarantine.jsonl"
    before = rss_now_mib()
    with OutageMidRun(sim, at_request=max(1, len(records) // 10)) as mid_run:
        started = time.perf_counter()
        summary = extract_records(
            source=str(source),
            output=str(output),
            quarantine=str(quarantine),
            spec=ExtractionSpec(
                schema=SCHEMA,
                prompt=PROMPT,
                key_field="ticket_id",
                max_reprompts=MAX_REPROMPTS,
            ),
            chat_model=model,
            run=RunOptions(
                chunk_size=batch_size,
                concurrency=concurrency,
                cache=str(folder / "record-cache.sqlite"),
            ),
        )
        wall = time.perf_counter() - started
    outage_at = None if mid_run.started_at is None else mid_run.started_at - started
    rss = peak_rss_mib()  # the flow's peak, before the checks below read the files
    counts, problems = check_run(records, output, quarantine, summary)
    bound = policy_bound(model)
    per_record, total, paced, outage, unnamed = requests_by_record(request_log)
    limit = len(records) * bound.per_record + paced + outage
    busiest = max(per_record.values(), default=0)
    if total > limit:
        problems.append(f"{total} requests, more than the bound of {limit}")
    over = {k: n for k, n in per_record.items() if n > bound.per_record}
    if over:
        problems.append(f"records past {bound.per_record} requests: {dict(list(over.items())[:5])}")
    if mid_run.windows and outage_at is None:
        problems.append("the outage did not start: the run made too few requests")
    if unnamed:
        problems.append(f"{unnamed} requests whose body names no record")
    valid_keys = {str(r["_key"]) for r in read_rows(output)} if output.exists() else set()
    faults = per_fault(request_log, valid_keys)
    reasons: collections.Counter[str] = collections.Counter()
    if quarantine.exists():
        for row in read_rows(quarantine):
            reasons[re.sub(r"\d+", "N", str(row.get("reason")))[:110]] += 1
    return SoakReport(
        records=len(records),
        valid=counts["valid"],
        quarantined=counts["quarantined"],
        lost=counts["lost"],
        duplicates=counts["duplicates"],
        without_reason=counts["without_reason"],
        requests=total,
        requests_bound=limit,
        paced_429=paced,
        outage_requests=outage,
        busiest_record=busiest,
        bound=bound,
        wall_s=wall,
        rss_before_mib=before,
        peak_rss_mib=rss,
        summary=summary,
        by_fault=sim.stats().by_fault,
        outage_at_s=outage_at,
        reasons=dict(reasons),
        faults=faults,
        problems=problems,
    )


def rss_now_mib() -> float:
    """This process's resident set size now (VmRSS; Linux), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib() -> float:
    """This process's peak resident set size (`ru_maxrss`, KiB on Linux), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000, help="records (default 10,000)")
    parser.add_argument("--seed", type=int, default=5, help="simulator and data seed")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import chat_model, tickets
    from prefect.testing.utilities import prefect_test_harness

    from prefect_openai_chat.simulator import Simulator

    logging.getLogger("prefect").setLevel(logging.ERROR)
    logging.getLogger("prefect_openai_chat").setLevel(logging.ERROR)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
    records = tickets(args.records, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=120):
        folder = Path(tmp)
        log = folder / "requests.jsonl"
        with Simulator(
            profile="chaos", seed=args.seed, subprocess=True, request_log=str(log)
        ) as sim:
            model = chat_model(sim.base_url, sim.api_key)  # the block's default policy
            print(
                f"chaos soak: {args.records:,} records, extract_records with the default"
                f" retry policy, simulator profile chaos (seed {args.seed})"
            )
            report = soak(records, folder, model, sim, log)
    if args.records <= 10_000 and report.peak_rss_mib > RSS_BOUND_MIB:
        report.problems.append(f"peak RSS above the bound of {RSS_BOUND_MIB} MiB")
    for line in report.lines():
        print(line)
    for problem in report.problems:
        print(f"FAIL: {problem}")
    print("PASS" if not report.problems else "FAIL")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
