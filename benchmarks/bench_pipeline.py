"""`extract_records` keeps every slot busy: no barrier between batches.

One run of the real flow (Prefect's local test API, batches of 100 as `extract_chunk`
task runs) over 2,000 support tickets against a simulator in its own process with
0.2 s latency and no limits, at concurrency 16. The comparison is the ideal pipeline,
from the same run: the requests the simulator answered x 0.2 s / 16, plus the flow's
fixed start-up cost, measured separately as a run over 16 tickets (one round trip) minus
its 0.2 s.

Target: wall time <= 1.1 x the ideal pipeline + the fixed start-up cost.

Run: python benchmarks/bench_pipeline.py [--records 2000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import chat_model, tickets, verdict

from prefect_openai_chat.simulator import Simulator

LATENCY_S = 0.2


def run_flow(model: Any, records: list[dict[str, Any]], folder: Path, concurrency: int) -> float:
    """Wall seconds of one `extract_records` run over `records`."""
    from prefect_openai_chat import ExtractionSpec, RunOptions
    from prefect_openai_chat.examples.tickets import TICKET_PROMPT
    from prefect_openai_chat.flows import extract_records

    source = folder / f"tickets-{len(records)}.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    cpu = time.process_time()
    started = time.perf_counter()
    summary = extract_records(
        source=str(source),
        output=str(folder / f"out-{len(records)}.jsonl"),
        quarantine=str(folder / f"quarantine-{len(records)}.jsonl"),
        spec=ExtractionSpec(
            schema="prefect_openai_chat.examples.tickets:SupportTicket",
            prompt=TICKET_PROMPT,
            key_field="ticket_id",
        ),
        chat_model=model,
        run=RunOptions(
            concurrency=concurrency,
            cache=False,
        ),
    )
    wall = time.perf_counter() - started
    assert summary["records"] == len(records), summary
    cpu = time.process_time() - cpu
    print(
        f"  {len(records)} records: {wall:.2f} s, client CPU {cpu:.2f} s,"
        f" concurrency {summary['concurrency']}"
    )
    return wall


def main(args: argparse.Namespace) -> None:
    from prefect.testing.utilities import prefect_test_harness

    logging.getLogger("prefect").setLevel(logging.WARNING)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # the run's own log lines
    records = tickets(args.records, seed=11)
    with (
        prefect_test_harness(),
        Simulator(profile="ideal", subprocess=True, ttft_s=LATENCY_S, seed=11) as sim,
        tempfile.TemporaryDirectory() as tmp,
    ):
        model = chat_model(sim.base_url, sim.api_key)
        folder = Path(tmp)
        run_flow(model, records[:16], folder, args.concurrency)  # warm-up: imports, server
        startup = run_flow(model, records[:16], folder, args.concurrency) - LATENCY_S
        sim.reset()
        wall = run_flow(model, records, folder, args.concurrency)
        stats = sim.stats()
        requests = stats.requests
        span = (stats.last_admitted_at or 0.0) - (stats.first_admitted_at or 0.0)
    ideal = requests * LATENCY_S / args.concurrency
    target = 1.1 * ideal + startup
    print(
        f"\nextract_records over {len(records)} tickets, latency {LATENCY_S} s,"
        f" concurrency {args.concurrency}, {requests} requests"
    )
    print(f"  plugin wall time:            {wall:7.2f} s")
    print(f"  ideal pipeline:              {ideal:7.2f} s  (requests x latency / concurrency)")
    print(f"  fixed start-up cost:         {startup:7.2f} s  (a 16-record run minus its latency)")
    print(f"  first to last request:       {span:7.2f} s  (the simulator's clock)")
    print(f"  ratio (wall - start-up) / ideal: {(wall - startup) / ideal:.3f}")
    verdict(
        "pipeline: wall <= 1.1 x ideal + start-up",
        wall <= target,
        f"{wall:.2f} s vs {target:.2f} s",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    main(parser.parse_args())
