"""A Batch API night in two shards next to the same night unsharded (issue 26, goal 5).

Each night is the `extract_records` flow itself with `RunOptions(via="batch")`, in a
fresh child process (`bench_batch_million.py`'s, against a Prefect test API,
`prefect_test_harness`), over the same
JSONL file of distinct sample tickets, into `SupportTicket`, with a record ledger of its
own. The sharded night has `shards=2` on a `DaskTaskRunner` of two worker processes (as
a night on a work pool runs its shards in processes of their own; threads of one process
would share one interpreter lock): each shard runs its own Batch API night over half the
lines, claims its requests in the ledger and writes its parts, and the parent merges
them. One simulator (`ideal`, in its own process) answers the batches, time-scaled: a
batch takes `--batch-s` seconds, polled every `--poll-s` seconds. What is left to the
client is CPU: reading and rendering the records, building the request lines,
validating the answers, writing the rows, so the gain is what a second process takes
of that on this machine's two cores (the simulator needs some of them too).

Rounds alternate, unsharded first; each checks that every record ended once, and that
the two shards sent the simulator what the unsharded night sent (its answers are seeded
by the request, so the same requests, re-asks included: none paid twice). It prints the
median wall time of each and their ratio.

Run: python benchmarks/bench_batch_shards.py [--records 50000] [--rounds 3]
     [--batch-s 2] [--poll-s 0.5]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from pathlib import Path

from _common import child_figures, median, rounds, verdict
from bench_batch_million import every_record_once, write_source

from prefect_openai_chat.simulator import Simulator

MILLION = str(Path(__file__).with_name("bench_batch_million.py"))  # its child runs a night


def children_cpu_s() -> float:
    """CPU seconds of this process's ended children (a night's child process, with the
    Dask workers and the Prefect test API it started and ended)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def process_cpu_s(sim: Simulator) -> float:
    """CPU seconds the simulator's process has used so far (Linux `/proc`)."""
    process = sim._process  # the benchmark's own simulator process
    if process is None:
        return float("nan")
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def night(count: int, shards: int, base: Path, sim: Simulator, poll_s: float) -> dict[str, float]:
    """One night over `count` records in `shards` shards, in a fresh child process."""
    work = Path(tempfile.mkdtemp(prefix=f"shards-{shards}-", dir=base))
    source = base / "tickets.jsonl"
    before = sim.stats()
    command = [
        sys.executable, MILLION, "--child", str(source), sim.base_url, sim.api_key,
        str(work), str(poll_s), str(shards),
    ]  # fmt: skip
    env = {**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"}
    sim_cpu, night_cpu = process_cpu_s(sim), children_cpu_s()
    figures = child_figures(command, f"the Batch API night in {shards} shard(s)", env=env)
    figures["night_cpu_s"] = children_cpu_s() - night_cpu
    figures["sim_cpu_s"] = process_cpu_s(sim) - sim_cpu
    after = sim.stats()
    sent = after.batch_requests - before.batch_requests
    online = after.requests - before.requests
    once = every_record_once(work, count, figures)
    figures.update(once=float(once), sent=sent, online=online)
    print(
        f"  shards={shards}: {figures['wall_s']:6.1f} s ({count / figures['wall_s']:5.0f}"
        f" records/s), {figures['valid']:.0f} valid + {figures['quarantined']:.0f}"
        f" quarantined, {sent} batch requests (re-asks included) and {online} online"
        f" for {count} records; every record once: {once}; CPU: the night's processes"
        f" {figures['night_cpu_s']:.1f} s, the simulator {figures['sim_cpu_s']:.1f} s",
        flush=True,
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-s", type=float, default=2.0, help="seconds a batch takes")
    parser.add_argument("--poll-s", type=float, default=0.5, help="poll_interval_s")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}", flush=True)
    walls: dict[int, list[float]] = {1: [], 2: []}
    once = paid_once = True
    with (
        tempfile.TemporaryDirectory(prefix="bench-batch-shards-") as tmp,
        Simulator(profile="ideal", seed=7, subprocess=True, batch_duration_s=args.batch_s) as sim,
    ):
        write_source(Path(tmp) / "tickets.jsonl", args.records)
        for number in range(1, args.rounds + 1):
            print(f"round {number}:", flush=True)
            sent = {}
            for shards in (1, 2):
                figures = night(args.records, shards, Path(tmp), sim, args.poll_s)
                walls[shards].append(figures["wall_s"])
                once = once and bool(figures["once"])
                sent[shards] = (figures["sent"], figures["online"])
            # the same answers (the simulator's are seeded by the request): the same requests
            paid_once = paid_once and sent[1] == sent[2]
    print(f"load average after: {os.getloadavg()}", flush=True)
    one, two = median(walls[1]), median(walls[2])
    print(
        f"wall time, median: unsharded {one:.1f} s (rounds {rounds(walls[1])}), two shards"
        f" {two:.1f} s (rounds {rounds(walls[2])}); two shards / unsharded {two / one:.3f}"
    )
    verdict(
        "Batch API night in shards",
        two < one and once and paid_once,
        f"two shards take {two / one:.3f} of the unsharded night's wall time; every record"
        f" once: {once}; the shards sent what the unsharded night sent: {paid_once}",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
