"""A batch of 1,000 calls through a 10 s outage: the plugin vs. a plain AsyncOpenAI client.

Run: python benchmarks/bench_outage.py [--reps 3] [--modes refuse,503]

One repetition of both modes takes about 75 s; `--reps 3` reports medians of three.

Against the simulator (its own process), 1,000 chat completions with 50 concurrent
workers and 0.1 s of simulated latency. For each outage mode (`refuse`: connections reset
at once; `503`: every request answered 503), the simulator is down for the first
`--outage` seconds (10 by default) of the batch. Two clients run the same batch:

* plugin: `RUNNERS.build(ChatModel(...))` - the in-call tier (4 attempts, full-jitter backoff),
  the retry budget (20%), the circuit breaker (opens after 5 outage errors, one probe
  every `--reset` seconds);
* plain: `openai.AsyncOpenAI` with the SDK's default retries (`max_retries=2`).

Every logical call must end in an answer, as in a pipeline whose task tier re-runs a
failed call: a caller that gets an error tries the call again after `--pause` seconds
(the same for both clients). Reported per client: requests that reached the dead server,
the batch's wall time, and the wall time lost (vs. the same client's batch without an
outage, measured in the same run); medians over the repetitions, and plugin/plain ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import openai

from prefect_openai_chat import reset_process_state
from prefect_openai_chat.blocks import ChatModel, OpenAICredentials
from prefect_openai_chat.blocks.assembly import RUNNERS
from prefect_openai_chat.simulator import OutageWindow, Simulator

MODEL = "gpt-4o-mini-2024-07-18"
MESSAGES = [{"role": "user", "content": "Say hi."}]
Call = Callable[[], Awaitable[Any]]
Close = Callable[[], Awaitable[None]]


@dataclass
class Figures:
    """What one batch cost."""

    wall_s: float
    requests: int
    dead_requests: int
    caller_errors: int


async def run_batch(call: Call, calls: int, workers: int, pause_s: float) -> tuple[float, int]:
    """Run `calls` logical calls on `workers` workers; each is repeated until it answers."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(calls):
        queue.put_nowait(i)
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while not queue.empty():
            queue.get_nowait()
            while True:
                try:
                    await call()
                    break
                except Exception:  # any failure: the pipeline re-runs the call later
                    errors += 1
                    await asyncio.sleep(pause_s)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.perf_counter() - start, errors


def forget_circuits() -> None:
    """A fresh circuit, budget and limiter for each batch (process-wide registries)."""
    reset_process_state()


def measure(
    sim: Simulator,
    make_call: Callable[[], tuple[Call, Close]],
    outage: OutageWindow | None,
    args: Any,
) -> Figures:
    forget_circuits()
    sim.reset()
    sim.configure(outages=[outage] if outage else [])  # the outage clock starts now

    async def main() -> tuple[float, int]:
        call, close = make_call()
        try:
            return await run_batch(call, args.calls, args.workers, args.pause)
        finally:
            await close()

    wall, errors = asyncio.run(main())
    stats = sim.stats()
    return Figures(wall, stats.requests, stats.by_fault.get("outage", 0), errors)


def plain_call(sim: Simulator) -> Callable[[], tuple[Call, Close]]:
    def make() -> tuple[Call, Close]:
        client = openai.AsyncOpenAI(base_url=sim.base_url, api_key=sim.api_key)  # max_retries=2

        async def call() -> Any:
            return await client.chat.completions.create(model=MODEL, messages=MESSAGES)

        return call, client.close

    return make


def plugin_call(sim: Simulator, reset_s: float) -> Callable[[], tuple[Call, Close]]:
    model = ChatModel(
        credentials=OpenAICredentials(base_url=sim.base_url, api_key=sim.api_key),
        model=MODEL,
        circuit={"reset_timeout_s": reset_s},
    )

    def make() -> tuple[Call, Close]:
        runner = RUNNERS.build(model)

        async def call() -> Any:
            return await runner.complete(MESSAGES)

        async def close() -> None:
            await model.get_client(async_client=True).close()  # the client cached on this loop

        return call, close

    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1, help="repetitions (medians reported)")
    parser.add_argument("--modes", default="refuse,503", help="outage modes: refuse and/or 503")
    parser.add_argument("--calls", type=int, default=1000, help="logical calls per batch")
    parser.add_argument("--workers", type=int, default=50, help="concurrent callers")
    parser.add_argument("--outage", type=float, default=10.0, help="outage length, seconds")
    parser.add_argument("--ttft", type=float, default=0.1, help="simulated latency, seconds")
    parser.add_argument("--pause", type=float, default=1.0, help="pipeline re-run delay, s")
    parser.add_argument("--reset", type=float, default=2.0, help="circuit reset timeout, s")
    args = parser.parse_args()
    logging.getLogger("prefect_openai_chat").setLevel(logging.ERROR)

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    print(
        f"{args.calls} calls, {args.workers} concurrent, latency {args.ttft * 1000:.0f} ms,"
        f" outage {args.outage:.0f} s from the batch start, failed calls re-run after"
        f" {args.pause:.1f} s, plugin circuit reset {args.reset:.1f} s;"
        f" medians of {args.reps} repetition(s)"
    )
    with Simulator(profile="ideal", seed=1, ttft_s=args.ttft, subprocess=True) as sim:
        clients = {"plugin": plugin_call(sim, args.reset), "plain": plain_call(sim)}
        warm = argparse.Namespace(**{**vars(args), "calls": args.workers * 2})
        for make in clients.values():  # connections, token vocabularies, first-call costs
            measure(sim, make, None, warm)
        results: dict[tuple[str, str], list[Figures]] = {}
        for rep in range(args.reps):
            order = list(clients.items())[:: 1 if rep % 2 == 0 else -1]  # no drift favours one
            for name, make in order:
                results.setdefault((name, "none"), []).append(measure(sim, make, None, args))
                for mode in modes:
                    window = OutageWindow(start_s=0.0, end_s=args.outage, mode=mode)  # type: ignore[arg-type]
                    figures = measure(sim, make, window, args)
                    results.setdefault((name, mode), []).append(figures)
                    print(
                        f"  rep {rep + 1} {name:6s} {mode:6s}: {figures.wall_s:6.2f} s,"
                        f" {figures.dead_requests:5d} requests to the dead server,"
                        f" {figures.requests:5d} in all, {figures.caller_errors:4d} caller errors"
                    )

    def med(name: str, mode: str, field: str) -> float:
        return statistics.median(getattr(f, field) for f in results[(name, mode)])

    print("\nmedians                        plugin      plain   plugin/plain")
    for name in ("none",):
        p, q = med("plugin", name, "wall_s"), med("plain", name, "wall_s")
        print(f"  no outage: wall time     {p:9.2f} s {q:9.2f} s   {p / q:8.3f}")
    for mode in modes:
        dead_p, dead_q = med("plugin", mode, "dead_requests"), med("plain", mode, "dead_requests")
        lost_p = med("plugin", mode, "wall_s") - med("plugin", "none", "wall_s")
        lost_q = med("plain", mode, "wall_s") - med("plain", "none", "wall_s")
        err_p, err_q = med("plugin", mode, "caller_errors"), med("plain", mode, "caller_errors")
        print(f"  outage {mode}:")
        print(
            f"    requests to dead server {dead_p:9.0f}   {dead_q:9.0f}     "
            f"{dead_p / max(dead_q, 1):8.3f}"
        )
        print(
            f"    wall time lost          {lost_p:9.2f} s {lost_q:9.2f} s   "
            f"{lost_p / lost_q if lost_q else float('nan'):8.3f}"
        )
        print(f"    errors seen by callers  {err_p:9.0f}   {err_q:9.0f}")


if __name__ == "__main__":
    main()
