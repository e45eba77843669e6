"""Throughput of the simulator (profile `ideal`, latency 0) next to a bare Starlette endpoint.

Both servers run in child processes with the same uvicorn settings; one
`AsyncOpenAI` client (max_retries=0) drives each at concurrency 32, alternating
rounds; the medians and their ratio are printed (target: ratio >= 0.6). A last
section runs many requests and reports the simulator process's RSS growth.

Run: python benchmarks/bench_simulator.py [--requests 1500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

from openai import AsyncOpenAI

from prefect_openai_chat.simulator import Simulator

CONCURRENCY = 32
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Summarise the nightly pipeline run in two sentences."},
]
FIXED = (
    b'{"id":"chatcmpl-bare","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"The pipeline ran. All records '
    b'were processed.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":30,"completion_tokens":9,"total_tokens":39,"prompt_tokens_details":'
    b'{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,'
    b'"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},'
    b'"service_tier":"default","system_fingerprint":"fp_bare"}'
)


def serve_bare() -> None:
    """Child process: a bare Starlette endpoint with a fixed completion, same uvicorn settings."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from prefect_openai_chat.simulator.server import bind_socket, uvicorn_config

    async def chat(request: Request) -> Response:
        await request.body()
        return Response(FIXED, media_type="application/json", headers={"x-request-id": "req_bare"})

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    sock = bind_socket("127.0.0.1", 0)
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}/v1", flush=True)
    uvicorn.Server(uvicorn_config(app)).run(sockets=[sock])


async def drive(base_url: str, requests: int) -> float:
    """Requests per second over `requests` calls at concurrency 32."""
    client = AsyncOpenAI(base_url=base_url, api_key="sk-simulator", max_retries=0)
    queue = iter(range(requests))

    async def worker() -> None:
        for _ in queue:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]

    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - start
    await client.close()
    return requests / elapsed


def _ints(values: list[float]) -> list[int]:
    return [round(v) for v in values]


def rss_kib(pid: int) -> int:
    """Resident set size of process `pid` in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare()
        return 0

    bare = subprocess.Popen(
        [sys.executable, __file__, "--serve-bare"], stdout=subprocess.PIPE, text=True
    )
    assert bare.stdout is not None
    bare_url = bare.stdout.readline().strip().rsplit(" ", 1)[1]
    sim_rates, bare_rates = [], []
    try:
        with Simulator(profile="ideal", subprocess=True) as sim:
            for _ in range(args.rounds):
                sim_rates.append(asyncio.run(drive(sim.base_url, args.requests)))
                bare_rates.append(asyncio.run(drive(bare_url, args.requests)))
            assert sim._process is not None
            pid = sim._process.pid
            before = rss_kib(pid)
            asyncio.run(drive(sim.base_url, args.requests * 3))
            after = rss_kib(pid)
            stats = sim.stats()
    finally:
        bare.terminate()
        bare.wait(5)
    sim_med, bare_med = statistics.median(sim_rates), statistics.median(bare_rates)
    print(f"requests per round: {args.requests}, concurrency {CONCURRENCY}, rounds {args.rounds}")
    print(f"simulator (ideal, latency 0): {sim_med:8.1f} req/s  rounds {_ints(sim_rates)}")
    print(f"bare Starlette endpoint:      {bare_med:8.1f} req/s  rounds {_ints(bare_rates)}")
    print(f"ratio simulator / bare: {sim_med / bare_med:.2f} (target >= 0.60)")
    print(
        f"simulator RSS over {args.requests * 3} more requests: {before} KiB -> {after} KiB "
        f"({after - before:+d} KiB); requests seen {stats.requests}, by status {stats.by_status}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
