"""How long a run takes to end when the endpoint stays down: `extract_records` on a dead server.

The flow runs over `--records` sample tickets with the `ChatModel`'s default policy
(`outage_patience_s` 120 s, circuit reset 30 s, 4 attempts, 2 task retries) against an
endpoint that never recovers: `refuse` points it at a port where nothing listens
(connections refused), `503` at a simulator that answers every request 503. Printed: the
wall time until the flow returns, the requests the dead server saw (503 mode), and that
every record ended in the quarantine with a reason (none lost). The comparison is the
policy's own promise: the outage patience, after which calls fail at once.

Run: python benchmarks/bench_long_outage.py [--mode refuse|503] [--records 50]
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import socket
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    """A loopback port where nothing listens (bound, read, released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["refuse", "503"], default="refuse")
    parser.add_argument("--records", type=int, default=50)
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import chat_model, tickets
    from bench_chaos_soak import PROMPT, SCHEMA, check_run
    from prefect.testing.utilities import prefect_test_harness

    from prefect_openai_chat import ExtractionSpec, RunOptions
    from prefect_openai_chat.flows import extract_records
    from prefect_openai_chat.simulator import Simulator

    logging.getLogger("prefect").setLevel(logging.ERROR)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
    records = tickets(args.records, seed=3)
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=120):
        folder = Path(tmp)
        source = folder / "records.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        sim = Simulator(fault_rates={"503": 1.0}) if args.mode == "503" else None
        if sim is not None:
            sim.start()
            base_url, api_key = sim.base_url, sim.api_key
        else:
            base_url, api_key = f"http://127.0.0.1:{free_port()}/v1", "sk-simulator"
        model = chat_model(base_url, api_key)  # the default policy
        policy = model.retry_policy()
        output, quarantine = folder / "valid.jsonl", folder / "quarantine.jsonl"
        started = time.perf_counter()
        summary = extract_records(
            source=str(source),
            output=str(output),
            quarantine=str(quarantine),
            spec=ExtractionSpec(
                schema=SCHEMA,
                prompt=PROMPT,
                key_field="ticket_id",
            ),
            chat_model=model,
            run=RunOptions(
                cache=False,
            ),
        )
        wall = time.perf_counter() - started
        requests = sim.stats().requests if sim is not None else None
        if sim is not None:
            sim.stop()
        counts, problems = check_run(records, output, quarantine, summary)
        reasons = collections.Counter(
            json.loads(line)["reason"].split(":")[0]
            + ": "
            + json.loads(line)["reason"].split(":")[1][:40]
            for line in quarantine.read_text(encoding="utf-8").splitlines()
        )
    print(
        f"outage ({args.mode}) for the whole run, {args.records} records, default policy"
        f" (outage patience {policy.outage_patience_s:g} s)"
    )
    print(f"  run ended after {wall:.1f} s")
    if requests is not None:
        print(f"  requests to the dead server {requests}")
    print(
        f"  valid {counts['valid']}, quarantined {counts['quarantined']}, lost {counts['lost']},"
        f" duplicates {counts['duplicates']}, without a reason {counts['without_reason']}"
    )
    for reason, count in reasons.most_common(4):
        print(f"  {count:>5}  {reason}")
    for problem in problems:
        print(f"FAIL: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
