"""Peak memory of a large Batch API night next to a 10,000-record one (issue 26, goal 5).

Each night is the `extract_records` flow itself with `RunOptions(via="batch")`, in a
fresh child process (against a Prefect test API, `prefect_test_harness`), over a JSONL
file of distinct sample tickets (`make_sample_data.generate`, made distinct across
chunks: each ticket has its own id and reference), extracted into `SupportTicket`
with a record ledger of its own. One simulator (`ideal`, in its own process) answers
the batches, time-scaled: a batch takes `--batch-s` seconds (the real API's up to
24 hours), polled every `--poll-s` seconds. Batches hold at most 50,000 requests (the
API's limit), so the large night runs many batch files.

The figure is the child's peak resident set size (VmHWM), interpreter, Prefect and
imports included. Every record once: the summary's records equal the input's, valid
plus quarantined equal the records, and the output and quarantine files hold one row
per input line with no key twice.

Target: peak RSS of the large night <= 1.2 x that of the 10,000-record night.

Run: python benchmarks/bench_batch_million.py [--small 10000] [--large 1000000]
     [--batch-s 2] [--poll-s 0.5]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import chat_model, child_figures, report_child_night, tickets, verdict

from prefect_openai_chat.examples.tickets import TICKET_INSTRUCTIONS, TICKET_PROMPT
from prefect_openai_chat.simulator import Simulator

TARGET = 1.2
SCHEMA = "prefect_openai_chat.examples.tickets:SupportTicket"
CHUNK = 10_000


def current_rss_kib() -> int:
    """This process's resident set size now, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def write_source(path: Path, count: int) -> None:
    """`count` distinct tickets as JSONL, made `CHUNK` at a time (flat memory here too)."""
    with path.open("w", encoding="utf-8") as handle:
        for start in range(0, count, CHUNK):
            for offset, record in enumerate(tickets(min(CHUNK, count - start), seed=7 + start)):
                number = start + offset + 1
                record["ticket_id"] = f"T-{number:07d}"
                record["body"] = f"{record['body']} (ref {number})"
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def child(
    source: str, base_url: str, api_key: str, workdir: str, poll_s: str, shards: str = "1"
) -> int:
    """Run one Batch API night over `source` (in `shards` shards on a `DaskTaskRunner` of two
    worker processes, `bench_batch_shards.py`); print its figures as one JSON line."""
    logging.getLogger("prefect").setLevel(logging.WARNING)
    logging.getLogger("prefect_openai_chat").setLevel(logging.WARNING)
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from prefect_openai_chat import BatchApiOptions, ExtractionSpec, RunOptions
    from prefect_openai_chat.flows import extract_records

    work = Path(workdir)
    with prefect_test_harness(server_startup_timeout=120):
        flow: Any = extract_records
        if int(shards) > 1:
            from prefect_dask.task_runners import DaskTaskRunner

            # the workers report to this process's test API (they inherit the environment)
            os.environ["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
            cluster = {"n_workers": 2, "threads_per_worker": 1, "processes": True}
            flow = extract_records.with_options(
                task_runner=DaskTaskRunner(cluster_kwargs={**cluster, "dashboard_address": None})
            )
        before = current_rss_kib()
        start = time.perf_counter()
        summary = flow(
            source=source,
            output=str(work / "rows.jsonl"),
            quarantine=str(work / "quarantine.jsonl"),
            spec=ExtractionSpec(
                schema=SCHEMA,
                prompt=TICKET_PROMPT,
                instructions=TICKET_INSTRUCTIONS,
                key_field="ticket_id",
            ),
            chat_model=chat_model(base_url, api_key),
            run=RunOptions(
                via="batch",
                shards=int(shards),
                batch_api=BatchApiOptions(poll_interval_s=float(poll_s)),
                cache=str(work / "ledger.sqlite"),
            ),
        )
        wall = time.perf_counter() - start
    report_child_night(summary, before, wall)
    return 0


def every_record_once(work: Path, count: int, figures: dict[str, float]) -> bool:
    """Records in = rows out, one row per input line, no key twice."""
    keys: set[str] = set()
    rows = 0
    for name, field in (("rows.jsonl", "_key"), ("quarantine.jsonl", "key")):
        path = work / name
        if not path.exists():
            continue
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                rows += 1
                keys.add(str(json.loads(line)[field]))
    summed = figures["valid"] + figures["quarantined"]
    return figures["records"] == count == summed == rows == len(keys)


def measure(count: int, base: Path, sim: Simulator, poll_s: float) -> dict[str, float]:
    """One night of `count` records in a fresh child process; its figures."""
    work = base / f"night-{count}"
    work.mkdir()
    source = work / "tickets.jsonl"
    write_source(source, count)
    command = [
        sys.executable,
        __file__,
        "--child",
        str(source),
        sim.base_url,
        sim.api_key,
        str(work),
        str(poll_s),
    ]
    env = {**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"}
    figures = child_figures(command, f"the Batch API night over {count} records", env=env)
    once = every_record_once(work, count, figures)
    figures["once"] = float(once)
    stats = sim.stats()
    print(
        f"{count:8d} records: peak RSS {figures['peak_kib'] / 1024:7.1f} MiB"
        f" (RSS before the night {figures['before_kib'] / 1024:.1f} MiB),"
        f" {figures['records']:.0f} in = {figures['valid']:.0f} valid"
        f" + {figures['quarantined']:.0f} quarantined, every record once: {once},"
        f" {figures['wall_s']:.0f}s ({figures['records'] / figures['wall_s']:.0f} records/s),"
        f" the process's CPU {figures.get('cpu_s', float('nan')):.1f} s;"
        f" simulator so far: {stats.batches_created} batches, {stats.batch_requests} batch"
        f" requests, {stats.requests} online requests",
        flush=True,
    )
    for name in ("rows.jsonl", "quarantine.jsonl", "tickets.jsonl", "ledger.sqlite"):
        (work / name).unlink(missing_ok=True)
    return figures


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(*sys.argv[2:8])
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--batch-s", type=float, default=2.0, help="seconds a batch takes")
    parser.add_argument("--poll-s", type=float, default=0.5, help="poll_interval_s")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}", flush=True)
    settings: dict[str, Any] = {"batch_duration_s": args.batch_s}
    with (
        tempfile.TemporaryDirectory(prefix="bench-million-") as tmp,
        Simulator(profile="ideal", seed=7, subprocess=True, **settings) as sim,
    ):
        small = measure(args.small, Path(tmp), sim, args.poll_s)
        large = measure(args.large, Path(tmp), sim, args.poll_s)
    print(f"load average after: {os.getloadavg()}", flush=True)
    ratio = large["peak_kib"] / small["peak_kib"]
    growth = (large["peak_kib"] - small["peak_kib"]) / (args.large - args.small) * 1024
    print(
        f"peak RSS {args.large} records / {args.small} records: {ratio:.3f}"
        f" (target <= {TARGET}); growth {growth:.1f} bytes per extra record"
    )
    once = bool(small["once"] and large["once"])
    verdict(
        "Batch API night memory",
        ratio <= TARGET and once,
        f"peak RSS ratio {ratio:.3f} ({large['peak_kib'] / 1024:.1f} MiB vs"
        f" {small['peak_kib'] / 1024:.1f} MiB), target <= {TARGET}; every record once: {once}",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
