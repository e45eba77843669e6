"""Peak memory for 100,000 records next to 10,000 records, each in a fresh process.

Two paths, chosen with `--path`:

* `batch` (default): what `extract_records` does per batch, without Prefect: the
  JSONL source streamed with the flow's own reader, `aextract_chunk.fn` (the coroutine
  inside the `extract_chunk` task) on 100 records at a time at concurrency 16, with
  a fresh record cache file, valid rows and failures written to JSONL files.
* `flow`: the `extract_records` flow itself (batches of 100 `extract_chunk` tasks,
  its sinks, totals and artifacts) against a Prefect test API
  (`prefect_test_harness`, a server in another process). Honest but slow here:
  100,000 records take well over 5 minutes on a 2-core machine, where the
  simulator and the client share the two cores.

Records are distinct sample tickets (`make_sample_data.generate`), extracted into
`SupportTicket`; one simulator (`ideal`, latency 0) serves both runs from its own
process. The figure is the child's peak resident set size (VmHWM), interpreter
and imports included (its RSS just before the work starts is printed too).

Target: peak RSS at 100,000 records <= 1.5 x peak RSS at 10,000 records.

Run: python benchmarks/bench_batch_memory.py [--path batch|flow]
     [--small 10000] [--large 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    chat_model,
    child_figures,
    extract_tickets,
    report_child_night,
    tickets,
    verdict,
)

from prefect_openai_chat.examples.tickets import TICKET_INSTRUCTIONS, TICKET_PROMPT
from prefect_openai_chat.simulator import Simulator

TARGET = 1.5
SCHEMA = "prefect_openai_chat.examples.tickets:SupportTicket"
BATCH_SIZE = 100  # the flow's default
CONCURRENCY = 16


def current_rss_kib() -> int:
    """This process's resident set size now, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def child(path: str, source: str, base_url: str, api_key: str, workdir: str) -> int:
    """Process `source` once by `path` (flow or batch) and print its figures as one JSON line."""
    logging.getLogger("prefect").setLevel(logging.WARNING)
    logging.getLogger("prefect_openai_chat").setLevel(logging.WARNING)
    work = Path(workdir)
    model = chat_model(base_url, api_key)
    if path == "flow":
        from prefect.testing.utilities import prefect_test_harness

        from prefect_openai_chat import ExtractionSpec, RunOptions
        from prefect_openai_chat.flows import extract_records

        with prefect_test_harness(server_startup_timeout=120):
            before = current_rss_kib()
            start = time.perf_counter()
            summary = extract_records(
                source=source,
                output=str(work / "rows.jsonl"),
                quarantine=str(work / "quarantine.jsonl"),
                spec=ExtractionSpec(
                    schema=SCHEMA,
                    prompt=TICKET_PROMPT,
                    instructions=TICKET_INSTRUCTIONS,
                    key_field="ticket_id",
                ),
                chat_model=model,
                run=RunOptions(
                    chunk_size=BATCH_SIZE,
                    concurrency=CONCURRENCY,
                    cache=str(work / "record-cache.sqlite"),
                ),
            )
            wall = time.perf_counter() - start
    else:
        before = current_rss_kib()
        start = time.perf_counter()
        summary = asyncio.run(batch_path(model, Path(source), work))
        wall = time.perf_counter() - start
    report_child_night(summary, before, wall)
    return 0


async def batch_path(model: Any, source: Path, work: Path) -> dict[str, int]:
    """What the flow does, without Prefect: stream the JSONL, `aextract_chunk.fn` per 100, write."""
    from prefect_openai_chat.flows.sources import read_records

    totals = {"records": 0, "valid": 0, "quarantined": 0}
    items = read_records(str(source))
    with (
        (work / "rows.jsonl").open("w", encoding="utf-8") as rows,
        (work / "quarantine.jsonl").open("w", encoding="utf-8") as bad,
    ):
        while batch := list(itertools.islice(items, BATCH_SIZE)):
            records = [item.record for item in batch if item.record is not None]
            report = await extract_tickets(
                model, records, CONCURRENCY, cache=work / "record-cache.sqlite"
            )
            for outcome in report.records:
                totals["records"] += 1
                if outcome.ok:
                    totals["valid"] += 1
                    rows.write(json.dumps({"_key": outcome.key, **(outcome.value or {})}) + "\n")
                else:
                    totals["quarantined"] += 1
                    bad.write(json.dumps({"key": outcome.key, "reason": outcome.reason}) + "\n")
    return totals


def measure(path: str, count: int, base: Path, base_url: str, api_key: str) -> dict[str, float]:
    """Write `count` tickets as JSONL and process them by `path` in a fresh child process."""
    work = base / f"{path}-{count}"
    work.mkdir()
    source = work / "tickets.jsonl"
    with source.open("w", encoding="utf-8") as handle:
        for record in tickets(count, seed=7):
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    command = [sys.executable, __file__, "--child", path, str(source), base_url, api_key, str(work)]
    figures = child_figures(command, f"the child run over {count} records")
    print(
        f"{path} {count:7d} records: peak RSS {figures['peak_kib'] / 1024:7.1f} MiB"
        f" (RSS before the work {figures['before_kib'] / 1024:.1f} MiB),"
        f" {figures['records']:.0f} in = {figures['valid']:.0f} valid"
        f" + {figures['quarantined']:.0f} quarantined, {figures['wall_s']:.0f}s"
        f" ({figures['records'] / figures['wall_s']:.0f} records/s)",
        flush=True,
    )
    return figures


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(*sys.argv[2:7])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument(
        "--path",
        choices=["batch", "flow"],
        default="batch",
        help="batch: aextract_chunk.fn per 100 records, as the flow does, without Prefect (default;"
        " 100k records take a few minutes); flow: the extract_records flow itself (slower)",
    )
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp,
        Simulator(profile="ideal", seed=7, subprocess=True) as sim,
    ):
        small = measure(args.path, args.small, Path(tmp), sim.base_url, sim.api_key)
        large = measure(args.path, args.large, Path(tmp), sim.base_url, sim.api_key)
    ratio = large["peak_kib"] / small["peak_kib"]
    growth = (large["peak_kib"] - small["peak_kib"]) / (args.large - args.small) * 1024
    print(
        f"peak RSS {args.large} records / {args.small} records: {ratio:.3f}"
        f" (target <= {TARGET}); growth {growth:.0f} bytes per extra record"
    )
    verdict(
        f"{args.path} path memory",
        ratio <= TARGET,
        f"peak RSS ratio {ratio:.3f} ({large['peak_kib'] / 1024:.1f} MiB vs"
        f" {small['peak_kib'] / 1024:.1f} MiB), target <= {TARGET}",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
