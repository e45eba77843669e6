"""Throughput of 64 concurrent calls through one circuit guard vs. none vs. pybreaker's call().

Run: python benchmarks/bench_breaker.py [--reps 5] [--calls 4]

Against the simulator with 50 ms time-to-first-token, in the same run:

* asyncio, 64 concurrent workers: plain `AsyncOpenAI` calls vs. the same calls through
  `call_with_retries(..., guard=CircuitGuard(...))` (goal: ratio >= 0.95);
* 64 threads: plain sync `OpenAI` calls vs. the plugin's sync path (`run_sync` of
  `call_with_retries(..., guard=...)` on the thread's own event loop and its cached
  `AsyncOpenAI` client, as the sync tasks run) vs. pybreaker's own `CircuitBreaker.call()`,
  which holds one lock for the whole call (expected ratio about 1/64).

Prints the median calls per second over the repetitions and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import openai
import pybreaker

from prefect_openai_chat._sync import run_sync
from prefect_openai_chat.chat.clients import CLIENTS
from prefect_openai_chat.resilience import CircuitGuard, RetryPolicy, call_with_retries
from prefect_openai_chat.simulator import Simulator

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say hi."}]
WORKERS = 64
POLICY = RetryPolicy()


async def run_async(client: openai.AsyncOpenAI, calls: int, guard: CircuitGuard | None) -> float:
    async def one() -> Any:
        return await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)

    async def worker() -> None:
        for _ in range(calls):
            if guard is None:
                await one()
            else:
                await call_with_retries(lambda n: one(), policy=POLICY, key=guard.key, guard=guard)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    return WORKERS * calls / (time.perf_counter() - start)


def run_threads(calls: int, call: Callable[[], Any]) -> float:
    barrier = threading.Barrier(WORKERS + 1)

    def worker() -> None:
        barrier.wait()
        for _ in range(calls):
            call()

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return WORKERS * calls / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions (medians are reported)")
    parser.add_argument("--calls", type=int, default=6, help="sequential calls per worker")
    parser.add_argument("--ttft", type=float, default=0.05, help="simulated latency, seconds")
    args = parser.parse_args()

    with Simulator(profile="ideal", seed=1, ttft_s=args.ttft, subprocess=True) as sim:
        aclient = openai.AsyncOpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)
        client = openai.OpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)
        guard = CircuitGuard("bench|async", fail_max=5)
        tguard = CircuitGuard("bench|threads", fail_max=5)
        breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)

        def plain() -> Any:
            return client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)

        def thread_client() -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)

        async def guarded_once() -> Any:
            client = CLIENTS.get("bench", thread_client)  # this thread's loop's client

            async def one(n: int) -> Any:
                return await client.chat.completions.create(
                    model=MODEL, messages=MESSAGES, max_tokens=5
                )

            return await call_with_retries(one, policy=POLICY, key=tguard.key, guard=tguard)

        def guarded() -> Any:
            return run_sync(guarded_once())

        def via_pybreaker() -> Any:
            return breaker.call(plain)

        loop = asyncio.new_event_loop()
        loop.run_until_complete(run_async(aclient, 1, None))  # warm up connections
        run_threads(1, plain)
        run_threads(1, guarded)
        figures: dict[str, list[float]] = {
            k: [] for k in ("async", "async+guard", "threads", "threads+guard", "threads+pybreaker")
        }
        for rep in range(args.reps):
            # Alternate which variant goes first, so that drift does not favour either.
            order = [None, guard] if rep % 2 == 0 else [guard, None]
            for g in order:
                name = "async" if g is None else "async+guard"
                figures[name].append(loop.run_until_complete(run_async(aclient, args.calls, g)))
            for name, call in [("threads", plain), ("threads+guard", guarded)][
                :: 1 - 2 * (rep % 2)
            ]:
                figures[name].append(run_threads(args.calls, call))
            figures["threads+pybreaker"].append(run_threads(1, via_pybreaker))
            print(
                f"rep {rep + 1}/{args.reps}: "
                + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in figures.items())
            )
        loop.run_until_complete(aclient.close())
        loop.close()
        client.close()

    med = {k: statistics.median(v) for k, v in figures.items()}
    print(
        f"\n{WORKERS} concurrent calls, simulator ttft {args.ttft * 1000:.0f} ms,"
        f" medians of {args.reps} repetitions (calls per second):"
    )
    print(f"  asyncio  no guard           {med['async']:8.1f}")
    print(
        f"  asyncio  plugin guard       {med['async+guard']:8.1f}"
        f"   ratio {med['async+guard'] / med['async']:.3f}  (goal >= 0.95)"
    )
    print(f"  threads  no guard           {med['threads']:8.1f}")
    print(
        f"  threads  plugin guard       {med['threads+guard']:8.1f}"
        f"   ratio {med['threads+guard'] / med['threads']:.3f}"
    )
    print(
        f"  threads  pybreaker call()   {med['threads+pybreaker']:8.1f}"
        f"   ratio {med['threads+pybreaker'] / med['threads']:.3f}"
        f"  (1/{WORKERS} = {1 / WORKERS:.3f})"
    )


if __name__ == "__main__":
    main()
