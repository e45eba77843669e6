"""Reading a source on S3: one streaming GET a pass vs. one ranged GET per 2 MiB.

A JSONL source of N sample tickets is put on a real S3 API on loopback (moto's server
in its own process) and read twice line by line, each line parsed, the way a night reads
it (count, then run), in a fresh child process per read: through `Location.open_read`
(the plugin: one streaming GET a pass, `storage/stream.py`) and through s3fs's file in
ranged reads of `BLOCK_SIZE` (how the plugin read before). Prints seconds per pass, GETs
a pass, and the peak RSS the two passes add, for each source size, reads alternating.

moto's server reads the whole object for every GET and slices out the range, so ranged
reads cost it time in proportion to the object's size per request: quadratic over a
pass. Real S3 serves a range in proportion to the range.

Run: python benchmarks/bench_object_reads.py [--records 10000 100000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import median, peak_rss_kib
from bench_object_storage import BUCKET, KEY_ID, SECRET, moto_server, s3_environment, write_source


def child(mode: str, url: str) -> int:
    """Read `url` twice, line by line; print seconds per pass and the peak RSS added."""
    from prefect_openai_chat.storage import BLOCK_SIZE, locate

    location = locate(url)
    location.fs.info(location.path)  # the client made, credentials found
    before = peak_rss_kib()
    walls = []
    for _ in range(2):
        start = time.perf_counter()
        if mode == "stream":
            handle = location.open_read()
        else:
            raw = location.fs.open(location.path, "rb", block_size=BLOCK_SIZE, cache_type="none")
            handle = io.BufferedReader(raw, buffer_size=BLOCK_SIZE)
        with handle:
            for line in handle:
                json.loads(line)
        walls.append(time.perf_counter() - start)
    print(json.dumps({"walls": walls, "added_kib": peak_rss_kib() - before}))
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2], sys.argv[3])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import s3fs

    from prefect_openai_chat.storage import BLOCK_SIZE

    with tempfile.TemporaryDirectory(prefix="bench-reads-") as tmp, moto_server() as endpoint:
        env = {**os.environ, **s3_environment(endpoint)}
        s3 = s3fs.S3FileSystem(key=KEY_ID, secret=SECRET, client_kwargs={"endpoint_url": endpoint})
        s3.mkdir(BUCKET)
        for count in args.records:
            path = write_source(count, Path(tmp))
            size = path.stat().st_size
            s3.put_file(str(path), f"{BUCKET}/in-{count}.jsonl")
            found: dict[str, list[dict[str, Any]]] = {"stream": [], "ranged": []}
            for _ in range(args.rounds):
                for mode in ("ranged", "stream"):
                    url = f"s3://{BUCKET}/in-{count}.jsonl"
                    done = subprocess.run(
                        [sys.executable, __file__, "--child", mode, url],
                        env=env,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    found[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
            load = os.getloadavg()[0]
            for mode, gets in (("stream", 1), ("ranged", -(-size // BLOCK_SIZE))):
                passes = [w for r in found[mode] for w in r["walls"]]
                added = median([r["added_kib"] / 1024 for r in found[mode]])
                print(
                    f"{count:7d} records ({size / 1e6:.1f} MB), {mode:6s}:"
                    f" pass {median(passes):5.2f} s"
                    f" (median of {len(passes)}: {', '.join(f'{w:.2f}' for w in passes)}),"
                    f" {gets} GETs a pass, peak RSS +{added:.1f} MiB; load average {load:.1f}",
                    flush=True,
                )
            stream = median([w for r in found["stream"] for w in r["walls"]])
            ranged = median([w for r in found["ranged"] for w in r["walls"]])
            print(f"{count:7d} records: streamed / ranged pass time {stream / ranged:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
