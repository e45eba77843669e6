"""A night on object storage: memory flat with the source's size, wall time as on local files.

One `extract_records` run (one process, `shards=1`, `cache=False`) reads
`s3://bench/in-<N>.jsonl` and writes `s3://bench/out-<N>.jsonl` and its quarantine on
a real S3 API on loopback: moto's server (`python -m moto.server`) in a process of its
own, so the objects it holds are not counted in the flow's memory. The simulator
(`ideal`, latency 0) runs in its own process too. Each night runs in a fresh child
process under Prefect's test API (`prefect_test_harness`, a server in yet another
process); the child reports its peak resident set size (VmHWM) and the wall time of
the `extract_records` call alone. Every night is checked: output + quarantine lines =
records, and nothing but the two objects left in the bucket's prefix.

Figures, from the same run:

* peak RSS of the 100,000-record S3 night against the 10,000-record S3 night
  (target <= 1.1 x): the source is streamed (one GET a pass, through a 2 MiB buffer)
  and the outputs are written to local temporary files and uploaded at the end in parts
  of 5 MiB, one at a time (`storage.PART_SIZE`);
* wall time of the 100,000-record S3 night against the same night on local files
  (target <= 1.1 x).

With `--repeat N` the nights alternate (small S3, large S3, large local) N times and
medians are quoted.

Run: python benchmarks/bench_object_storage.py [--records 100000] [--small 10000]
     [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _common import (
    chat_model,
    child_figures,
    median,
    peak_rss_kib,
    report_child_night,
    rounds,
    tickets,
    verdict,
)

from prefect_openai_chat.simulator import Simulator

TARGET = 1.1
BUCKET = "bench"
SCHEMA = "prefect_openai_chat.examples.tickets:SupportTicket"
KEY_ID = "bench-key-id-0123"  # moto takes any credentials
SECRET = "bench-secret-0123456789"


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 server in its own process on loopback; its endpoint URL. Stopped at the end."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        "moto's server did not start (pip install 'moto[server]')"
                    ) from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def s3_environment(endpoint: str) -> dict[str, str]:
    """The AWS variables a container would have, pointing at `endpoint`."""
    return {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def child(source: str, output: str, quarantine: str, base_url: str, api_key: str) -> int:
    """Run one night and print its figures as one JSON line."""
    from prefect.testing.utilities import prefect_test_harness

    from prefect_openai_chat import ExtractionSpec, RunOptions
    from prefect_openai_chat.examples.tickets import TICKET_INSTRUCTIONS, TICKET_PROMPT
    from prefect_openai_chat.flows import extract_records

    logging.getLogger("prefect").setLevel(logging.WARNING)
    logging.getLogger("prefect_openai_chat").setLevel(logging.WARNING)
    model = chat_model(base_url, api_key)
    with prefect_test_harness(server_startup_timeout=120):
        before = peak_rss_kib()
        start = time.perf_counter()
        summary = extract_records(
            source=source,
            output=output,
            quarantine=quarantine,
            spec=ExtractionSpec(
                schema=SCHEMA,
                prompt=TICKET_PROMPT,
                instructions=TICKET_INSTRUCTIONS,
                key_field="ticket_id",
            ),
            chat_model=model,
            run=RunOptions(
                cache=False,
            ),
        )
        wall = time.perf_counter() - start
    report_child_night(summary, before, wall)
    return 0


def write_source(count: int, folder: Path) -> Path:
    """`count` distinct sample tickets as a local JSONL file."""
    path = folder / f"in-{count}.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for record in tickets(count, seed=7):
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def lines_of(fs: Any, path: str) -> int:
    """Lines in a file (local or on the store), read whole: s3fs's readline re-reads a block."""
    return bytes(fs.cat_file(path)).count(b"\n")


def night(
    where: str, count: int, folder: Path, s3: Any, env: dict[str, str], sim: Simulator
) -> dict[str, float]:
    """One night over `count` records on `where` ("s3" or "local") in a fresh child process."""
    from fsspec.implementations.local import LocalFileSystem

    tag = f"{where}-{count}-{time.monotonic_ns()}"
    if where == "s3":
        fs, base = s3, f"{BUCKET}/{tag}"
        source = f"s3://{BUCKET}/in-{count}.jsonl"
        output, quarantine = f"s3://{base}/out.jsonl", f"s3://{base}/quarantine.jsonl"
    else:
        fs, base = LocalFileSystem(), str(folder / tag)
        Path(base).mkdir()
        source = str(folder / f"in-{count}.jsonl")
        output, quarantine = f"{base}/out.jsonl", f"{base}/quarantine.jsonl"
    command = [sys.executable, __file__, "--child", source, output, quarantine]
    command += [sim.base_url, sim.api_key]
    what = f"the {where} night over {count} records"
    figures = child_figures(command, what, env={**os.environ, **env})
    written = lines_of(fs, output.split("://")[-1]) + lines_of(fs, quarantine.split("://")[-1])
    fs.invalidate_cache()
    left = sorted(Path(p).name for p in fs.ls(base, detail=False))
    assert written == count == figures["records"], (written, count, figures)
    assert left == ["out.jsonl", "quarantine.jsonl"], left
    fs.rm(base, recursive=True)
    print(
        f"  {where:5s} {count:7d} records: {figures['wall_s']:7.1f} s"
        f" ({count / figures['wall_s']:.0f} records/s), peak RSS"
        f" {figures['peak_kib'] / 1024:6.1f} MiB (at the flow's start"
        f" {figures['before_kib'] / 1024:.1f}), {figures['valid']:.0f} valid"
        f" + {figures['quarantined']:.0f} quarantined, nothing else left",
        flush=True,
    )
    return figures


def load() -> str:
    """The machine's load averages, for the report."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} on {os.cpu_count()} cores"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(*sys.argv[2:7])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=1, help="nights of each kind; medians")
    args = parser.parse_args()

    import s3fs

    print(f"start: {load()}", flush=True)
    small_rss, large_rss, s3_wall, local_wall = [], [], [], []
    with (
        tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp,
        moto_server() as endpoint,
        Simulator(profile="ideal", seed=7, subprocess=True) as sim,
    ):
        env = s3_environment(endpoint)
        s3 = s3fs.S3FileSystem(key=KEY_ID, secret=SECRET, client_kwargs={"endpoint_url": endpoint})
        s3.mkdir(BUCKET)
        for count in (args.small, args.records):
            s3.put_file(str(write_source(count, Path(tmp))), f"{BUCKET}/in-{count}.jsonl")
        for _ in range(args.repeat):
            small_rss.append(night("s3", args.small, Path(tmp), s3, env, sim)["peak_kib"])
            large = night("s3", args.records, Path(tmp), s3, env, sim)
            large_rss.append(large["peak_kib"])
            s3_wall.append(large["wall_s"])
            local_wall.append(night("local", args.records, Path(tmp), s3, env, sim)["wall_s"])
    print(f"end: {load()}")
    memory = median(large_rss) / median(small_rss)
    wall = median(s3_wall) / median(local_wall)
    print(
        f"\npeak RSS, S3 night, {args.records} records: {median(large_rss) / 1024:.1f} MiB"
        f" {rounds([v / 1024 for v in large_rss])}; {args.small} records:"
        f" {median(small_rss) / 1024:.1f} MiB; ratio {memory:.3f} (target <= {TARGET})"
    )
    print(
        f"wall time, {args.records} records: S3 {median(s3_wall):.1f} s {rounds(s3_wall)};"
        f" local files {median(local_wall):.1f} s {rounds(local_wall)};"
        f" ratio {wall:.3f} (target <= {TARGET})"
    )
    verdict("memory flat on object storage", memory <= TARGET, f"ratio {memory:.3f}")
    verdict("S3 night as fast as local files", wall <= TARGET, f"ratio {wall:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
