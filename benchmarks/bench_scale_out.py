"""Two workers against one: a sharded `extract_records` on a Dask cluster of processes.

Each "worker" is a Dask worker process running shards of one `extract_records` run
(`shards=`, `DaskTaskRunner`), every process at the same concurrency. The simulator
serves from its own process; the Prefect API is a local server all processes share.

1. latency-bound: 1 s per answer, no rate limit. One worker (2 shards x 3 calls in
   flight) against two workers (4 shards x 3, two per worker): the same per-worker
   concurrency of 6 (low, so that the client CPU of the shared 2-core machine is not
   what binds: the point is the latency). Figure: records per second while the workers
   are busy (the median of 2 s windows in which requests were answered; start-up, shown
   apart as the wall time, is Dask's and Prefect's, not the calls'); target: two workers
   >= 1.8 x one.
2. limit-bound: a request limit of 8 per minute, where the simulator's minute lasts one
   second (8 requests per second), 0.1 s per answer, two workers able to send far more,
   sharing the limiter (and the circuit) through Redis (`REDIS_URL`, default
   redis://127.0.0.1:6379/0). Figure: the combined rate as a share of the limit, from the
   first to the last admitted request, less the first full bucket, and the 429s after the
   first (scaled) minute, while the limiter learns the limit from the headers (both as
   bench_rate_limits.py measures them); targets: >= 0.9 of the limit, and no 429 after
   the first minute (the workers never asked for more than the limit).

Run: python benchmarks/bench_scale_out.py [--records 288] [--limit-records 400]
     [--only latency|limit]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import chat_model, verdict

from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.simulator.request_log import read_request_log

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PER_SHARD = 3  # calls in flight per shard
SHARDS_PER_WORKER = 2  # so a worker holds 6 calls in flight
SCALE = 60.0  # the simulator's rate-limit minute lasts one second
RPM = 8  # per scaled minute of one second: 8 requests per second


def write_source(folder: Path, count: int) -> Path:
    """`count` distinct sample tickets as a JSONL file."""
    import json

    from _common import tickets

    path = folder / "tickets.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for record in tickets(count):
            out.write(json.dumps(record) + "\n")
    return path


class Sampler:
    """Counts the simulator's admitted requests every `every_s` seconds, from a thread."""

    def __init__(self, sim: Simulator, every_s: float = 2.0) -> None:
        self.sim, self.every_s = sim, every_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.samples.append((time.monotonic(), self.sim.stats().admitted))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def busy_rate(self) -> float:
        """The median rate (per second) over the windows in which requests were answered."""
        rates = [
            (n2 - n1) / (t2 - t1)
            for (t1, n1), (t2, n2) in itertools.pairwise(self.samples)
            if n2 > n1
        ]
        return statistics.median(rates) if rates else 0.0


def sharded_run(sim: Simulator, source: Path, folder: Path, workers: int, **model: Any) -> float:
    """One `extract_records` over `source` on `workers` Dask processes; the wall time."""
    from distributed import Client, LocalCluster
    from prefect_dask.task_runners import DaskTaskRunner

    from prefect_openai_chat.examples.tickets import TICKET_PROMPT
    from prefect_openai_chat.flows import extract_records

    # The cluster is up, every worker with it, before the first shard is submitted:
    # otherwise Dask gives all the shards to the first worker that registers.
    cluster = LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=workers, threads_per_worker=SHARDS_PER_WORKER, processes=True
    )
    with Client(cluster) as client:  # type: ignore[no-untyped-call]
        client.wait_for_workers(workers)
    runner = DaskTaskRunner(address=cluster.scheduler_address)
    started = time.perf_counter()
    summary = extract_records.with_options(task_runner=runner)(
        source=str(source),
        schema="prefect_openai_chat.examples.tickets:SupportTicket",
        chat_model=chat_model(sim.base_url, sim.api_key, **model),
        prompt=TICKET_PROMPT,
        output=str(folder / f"rows-{workers}.jsonl"),
        quarantine=str(folder / f"quarantine-{workers}.jsonl"),
        key_field="ticket_id",
        batch_size=50,
        concurrency=PER_SHARD,
        cache=str(folder / f"cache-{workers}-{time.time_ns()}.sqlite"),  # every call paid
        shards=workers * SHARDS_PER_WORKER,
    )
    wall = time.perf_counter() - started
    cluster.close()
    assert summary["records"] == summary["valid"] + summary["quarantined"]
    return wall


def latency_bound(folder: Path, records: int) -> bool:
    source = write_source(folder, records)
    rates: dict[int, float] = {}
    walls: dict[int, float] = {}
    with Simulator(profile="ideal", seed=3, ttft_s=1.0, subprocess=True) as sim:
        for workers in (1, 2):
            sim.reset()
            with Sampler(sim) as sampler:
                walls[workers] = sharded_run(sim, source, folder, workers)
            stats = sim.stats()
            rates[workers] = sampler.busy_rate()
            print(
                f"  {workers} worker(s) x {PER_SHARD * SHARDS_PER_WORKER} in flight:"
                f" {rates[workers]:6.1f} records/s (median of 2 s windows),"
                f" {stats.admitted_per_s or 0.0:6.1f}/s first to last call,"
                f" {records / walls[workers]:6.1f}/s wall ({walls[workers]:.1f}s with start-up),"
                f" {stats.admitted} requests, peak {stats.concurrent_peak} in flight"
            )
    ratio = rates[2] / rates[1] if rates[1] else 0.0
    print(f"  ratio two workers / one: {ratio:.2f} (wall {walls[1] / walls[2]:.2f})")
    return verdict("latency-bound: two workers >= 1.8 x one", ratio >= 1.8, f"{ratio:.2f}")


def after_first_minute(sim: Simulator) -> Any:
    """The simulator's stats one (scaled) minute after its first admitted request."""
    while sim.stats().first_admitted_at is None:
        time.sleep(0.05)
    first = sim.stats().first_admitted_at or time.time()
    time.sleep(max(0.0, first + 60.0 / SCALE - time.time()))
    return sim.stats()


def limit_bound(folder: Path, records: int) -> bool:
    source = write_source(folder, records)
    capacity = float(RPM)  # a full bucket lets one (scaled) minute's allowance through
    rate = RPM * SCALE / 60.0  # per second
    log = folder / "requests.jsonl"
    with Simulator(
        profile="ideal", seed=4, ttft_s=0.1, rpm=RPM, time_scale=SCALE, request_log=str(log)
    ) as sim:
        early: list[Any] = []
        watcher = threading.Thread(target=lambda: early.append(after_first_minute(sim)))
        watcher.start()
        wall = sharded_run(sim, source, folder, 2, redis_url=REDIS_URL)
        watcher.join()
        stats = sim.stats()
    late_429 = stats.by_status.get(429, 0) - early[0].by_status.get(429, 0)
    late_all = stats.requests - early[0].requests
    span = (stats.last_admitted_at or 0.0) - (stats.first_admitted_at or 0.0)
    fastest = max(0.0, (stats.admitted - capacity) / rate)
    share = fastest / span if span > 0 else 0.0
    limited = stats.by_status.get(429, 0)
    combined = stats.admitted_per_s or 0.0
    print(
        f"  2 workers x {PER_SHARD * SHARDS_PER_WORKER} in flight, limiter shared via Redis:"
        f" {stats.admitted} admitted, {limited} answered 429 ({stats.requests} requests),"
        f" {combined:.1f} requests/s over {span:.1f}s against a limit of {rate:.0f}/s"
        f" (bucket {capacity:.0f}), wall {wall:.1f}s"
    )
    print(f"  ratio combined / limit (less the first bucket): {share:.3f}")
    ok = verdict("limit-bound: >= 0.9 of the limit", share >= 0.9, f"{share:.3f}")
    entries = read_request_log(log)
    first = min(entry["t"] for entry in entries)
    when = [f"{entry['t'] - first:.1f}s" for entry in entries if entry["status"] == 429]
    print(f"  429s at {', '.join(when) or '-'} from the first request")
    print(f"  429s after the first (scaled) minute, while the limiter learns: {late_429}")
    ok &= verdict(
        "limit-bound: never above the limit (no 429 after the first minute)",
        late_429 == 0,
        f"{late_429} of {late_all}",
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=288, help="latency-bound records")
    parser.add_argument("--limit-records", type=int, default=400, help="limit-bound records")
    parser.add_argument("--only", choices=("latency", "limit"))
    args = parser.parse_args()
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start(timeout=120)
    os.environ["PREFECT_API_URL"] = server.api_url  # every Dask process reports here
    ok = True
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.only in (None, "latency"):
                print(f"latency-bound: {args.records} tickets, 1 s per answer, no limit")
                ok &= latency_bound(Path(tmp), args.records)
            if args.only in (None, "limit"):
                print(f"limit-bound: {args.limit_records} tickets, limit {RPM} requests/s")
                ok &= limit_bound(Path(tmp), args.limit_records)
    finally:
        server.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
