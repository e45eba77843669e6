"""Rate limits nobody configured: the plugin learns them, shares them, and loses no record.

Three scenarios, each against a fresh simulator in its own process whose rate-limit
"minute" lasts one second (time_scale 60), 0.1 s latency, no content faults:

1. requests: 600 ticket extractions, 50 requests per scaled minute, concurrency 64,
   no limits configured on the block;
2. tokens: the same with long prompts (~1,900 tokens each) and a tokens-per-minute limit
   that binds first (15,000 tokens per scaled minute, about 7 requests; 1,000 requests);
3. two workers: two processes extracting 300 tickets each, each configured with the
   organisation's full limit (`requests_per_minute=3000`, i.e. 50/s), sharing the limiter
   through Redis (`REDIS_URL`, default redis://127.0.0.1:6379/0).

The comparison, from the same run: (1, 2) bare `AsyncOpenAI` with the SDK's default
retries and `asyncio.gather` under a semaphore of 64; (3) the same two workers without
Redis, each with its own limiter.

Figures: records valid, the share of HTTP answers that were 429 after the first scaled
minute, and the throughput as a share of what the limit allows, from the first to the last
admitted request: the fastest possible span, (units - capacity) / rate, over the measured one.
Targets: 600/600 valid, >= 0.95 of the limit (0.9 for two workers), <= 1 % 429.

4. start (`--only start --records 100`): a short night against the same unknown limit, with
   the limiter's cautious start (the first burst spread at `BURST_PACE` times the learned
   rate) and without it (`BURST_PACE` infinite: the bucket's balance sent at once), rounds
   alternating: the share of all HTTP answers that were 429 and the share of the limit.
   Targets: <= 2 % 429, >= 0.9 of the limit.

Run: python benchmarks/bench_rate_limits.py [--records 600] [--only requests|tokens|workers]
     python benchmarks/bench_rate_limits.py --only start --records 100 [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from _common import MODEL, chat_model, extract_tickets, hard_case_ids, tickets, verdict
from openai import AsyncOpenAI

from prefect_openai_chat.examples.tickets import TICKET_INSTRUCTIONS, TICKET_PROMPT, SupportTicket
from prefect_openai_chat.extraction.prompts import build_request, resolve_mode
from prefect_openai_chat.simulator import Simulator

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
SCALE = 60.0  # a rate-limit minute lasts one second
LATENCY_S = 0.1
CONCURRENCY = 64
FILLER = (
    " The customer attached the full history of earlier conversations about this account,"
    " including order confirmations, shipping notices and the notes of three agents."
)


def long_tickets(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same tickets with ~1,700 more tokens of body each, so tokens bind first."""
    return [{**r, "body": r["body"] + FILLER * 60} for r in records]


@asynccontextmanager
async def simulator(**limits: Any) -> AsyncIterator[Simulator]:
    """A simulator in its own process, warmed up: its first answer builds caches for a
    second or so, which neither side should be measured on. Then its counters and
    buckets start afresh."""
    async with Simulator(
        profile="ideal", subprocess=True, time_scale=SCALE, ttft_s=LATENCY_S, seed=3, **limits
    ) as sim:
        mode = resolve_mode("auto", MODEL)
        messages, params = build_request(SupportTicket, "warm up", None, mode, model=MODEL)
        client = AsyncOpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)
        await client.chat.completions.create(model=MODEL, messages=messages, **params)
        await client.close()
        sim.reset()
        yield sim


async def after_first_minute(sim: Simulator) -> Any:
    """The simulator's counters one scaled minute after its first admitted request."""
    while sim.stats().first_admitted_at is None:
        await asyncio.sleep(0.02)
    first = sim.stats().first_admitted_at or time.time()
    await asyncio.sleep(max(0.0, first + 60.0 / SCALE - time.time()))
    return sim.stats()


def figures(
    sim: Simulator, early: Any, capacity: float, rate: float, units: float
) -> dict[str, Any]:
    """Valid-independent server figures: 429 share after the first minute, share of the limit."""
    stats = sim.stats()
    late_429 = stats.by_status.get(429, 0) - early.by_status.get(429, 0)
    late_all = stats.requests - early.requests
    span = (stats.last_admitted_at or 0.0) - (stats.first_admitted_at or 0.0)
    fastest = max(0.0, (units - capacity) / rate)
    return {
        "requests": stats.requests,
        "429": stats.by_status.get(429, 0),
        "late_429_share": late_429 / late_all if late_all else 0.0,
        "of_limit": fastest / span if span > 0 else 0.0,
        "span_s": span,
        "tokens": sum(v["prompt"] + v["completion"] for v in stats.tokens_by_key.values()),
    }


Measure = Callable[[Simulator, Any], dict[str, Any]]


async def plugin_side(
    records: list[dict[str, Any]], measure: Measure, **limits: Any
) -> tuple[int, dict[str, Any]]:
    async with simulator(**limits) as sim:
        model = chat_model(sim.base_url, sim.api_key)
        watcher = asyncio.ensure_future(after_first_minute(sim))
        report = await extract_tickets(model, records, CONCURRENCY)
        return report.valid, measure(sim, await watcher)


async def bare_side(
    records: list[dict[str, Any]], measure: Measure, **limits: Any
) -> tuple[int, dict[str, Any]]:
    mode = resolve_mode("auto", MODEL)
    messages, params = build_request(SupportTicket, "-", TICKET_INSTRUCTIONS, mode, model=MODEL)
    semaphore = asyncio.Semaphore(CONCURRENCY)
    async with simulator(**limits) as sim:
        client = AsyncOpenAI(base_url=sim.base_url, api_key=sim.api_key)  # SDK retries: 2

        async def one(record: dict[str, Any]) -> bool:
            user = {"role": "user", "content": TICKET_PROMPT.format(**record)}
            try:
                async with semaphore:
                    completion = await client.chat.completions.create(
                        model=MODEL, messages=[messages[0], user], **params
                    )
                SupportTicket.model_validate_json(completion.choices[0].message.content or "")
            except Exception:
                return False
            return True

        watcher = asyncio.ensure_future(after_first_minute(sim))
        valid = sum(await asyncio.gather(*(one(r) for r in records)))
        await client.close()
        return valid, measure(sim, await watcher)


def line(name: str, valid: int, total: int, f: dict[str, Any]) -> str:
    return (
        f"  {name:<34} valid {valid:>4}/{total}  requests {f['requests']:>5}  429 {f['429']:>4}"
        f"  429 after 1st minute {100 * f['late_429_share']:5.2f}%"
        f"  of limit {f['of_limit']:.3f}  span {f['span_s']:.1f}s"
    )


async def single(kind: str, records: list[dict[str, Any]]) -> bool:
    if kind == "requests":
        limits: dict[str, Any] = {"rpm": 50}
        capacity, rate = 50.0, 50.0
    else:
        records = long_tickets(records)
        limits = {"rpm": 1000, "tpm": 15_000}
        capacity, rate = 15_000.0, 15_000.0

    def measure(sim: Simulator, early: Any) -> dict[str, Any]:
        units = sim.stats().admitted if kind == "requests" else _charged(sim)
        return figures(sim, early, capacity, rate, units)

    results = {}
    for name, side in (("plugin", plugin_side), ("bare", bare_side)):
        results[name] = await side(records, measure, **limits)
    print(f"\n{kind} limit binds: {len(records)} tickets, concurrency {CONCURRENCY}, no limits set")
    print(line("plugin (learned limits)", results["plugin"][0], len(records), results["plugin"][1]))
    print(line("bare AsyncOpenAI + gather", results["bare"][0], len(records), results["bare"][1]))
    valid, f = results["plugin"]
    bare_valid = results["bare"][0]
    print(f"  ratio valid plugin/bare {valid / max(bare_valid, 1):.2f}")
    ok = verdict(f"{kind}: all valid", valid == len(records), f"{valid}/{len(records)}")
    ok &= verdict(f"{kind}: >= 0.95 of the limit", f["of_limit"] >= 0.95, f"{f['of_limit']:.3f}")
    ok &= verdict(
        f"{kind}: <= 1% 429 after the first minute",
        f["late_429_share"] <= 0.01,
        f"{100 * f['late_429_share']:.2f}%",
    )
    return ok


def _charged(sim: Simulator) -> float:
    """Tokens the simulator charged to admitted requests: prompt plus completion."""
    return float(sum(v["prompt"] + v["completion"] for v in sim.stats().tokens_by_key.values()))


async def workers(records: list[dict[str, Any]]) -> bool:
    results = {}
    for name, redis_url in (("plugin, limiter shared via Redis", REDIS_URL), ("no sharing", "")):
        async with simulator(rpm=50) as sim:
            watcher = asyncio.ensure_future(after_first_minute(sim))
            halves = [records[: len(records) // 2], records[len(records) // 2 :]]
            procs = [
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    __file__,
                    "--worker",
                    json.dumps({"base_url": sim.base_url, "key": sim.api_key, "redis": redis_url}),
                    json.dumps(half),
                    stdout=subprocess.PIPE,
                )
                for half in halves
            ]
            outs = [json.loads((await p.communicate())[0]) for p in procs]
            early = await watcher
            results[name] = (
                sum(o["valid"] for o in outs),
                figures(sim, early, 50, 50, sim.stats().admitted),
            )
    print(f"\ntwo workers, each set to the organisation's full limit, {len(records)} tickets")
    for name, (valid, f) in results.items():
        print(line(name, valid, len(records), f))
    valid, f = results["plugin, limiter shared via Redis"]
    ok = verdict("workers: all valid", valid == len(records), f"{valid}/{len(records)}")
    ok &= verdict("workers: >= 0.9 of the limit", f["of_limit"] >= 0.9, f"{f['of_limit']:.3f}")
    ok &= verdict(
        "workers: <= 1% 429 after the first minute",
        f["late_429_share"] <= 0.01,
        f"{100 * f['late_429_share']:.2f}%",
    )
    return ok


async def worker(config: dict[str, Any], records: list[dict[str, Any]]) -> None:
    fields: dict[str, Any] = {"requests_per_minute": 3000}  # 50/s: the organisation's full limit
    if config["redis"]:
        fields["redis_url"] = config["redis"]
    model = chat_model(config["base_url"], config["key"], **fields)
    report = await extract_tickets(model, records, CONCURRENCY)
    print(json.dumps({"valid": report.valid}))


async def start(records: list[dict[str, Any]], rounds: int) -> bool:
    """A short night: 429s of all HTTP answers, with the cautious start and without it."""
    from prefect_openai_chat.resilience import limiter

    cautious = limiter.BURST_PACE
    sides: dict[str, list[tuple[int, dict[str, Any]]]] = {"cautious start": [], "burst": []}

    def measure(sim: Simulator, early: Any) -> dict[str, Any]:
        f = figures(sim, early, 50.0, 50.0, sim.stats().admitted)
        f["429_share"] = f["429"] / f["requests"] if f["requests"] else 0.0
        return f

    for _ in range(rounds):  # alternating sides
        for name, pace in (("cautious start", cautious), ("burst", float("inf"))):
            limiter.BURST_PACE = pace
            try:
                sides[name].append(await plugin_side(records, measure, rpm=50))
            finally:
                limiter.BURST_PACE = cautious
    print(
        f"\nstart of a night: {len(records)} tickets, 50 requests per (1 s) minute, concurrency"
        f" {CONCURRENCY}, no limits set, {rounds} round(s); medians"
    )
    med: dict[str, dict[str, float]] = {}
    for name, runs in sides.items():
        med[name] = {
            key: statistics.median(f[key] for _, f in runs)
            for key in ("429_share", "of_limit", "requests", "429")
        }
        valid = min(v for v, _ in runs)
        print(
            f"  {name:<15} valid (fewest) {valid}/{len(records)}  requests"
            f" {med[name]['requests']:.0f}  429 {med[name]['429']:.0f}  429 share of all answers"
            f" {100 * med[name]['429_share']:.2f}%  of limit {med[name]['of_limit']:.3f}"
            f"  (per round: 429 {[f['429'] for _, f in runs]}, of limit"
            f" {[round(f['of_limit'], 3) for _, f in runs]})"
        )
    new, old = med["cautious start"], med["burst"]
    print(
        f"  ratio cautious/burst: 429 share {new['429_share'] / max(old['429_share'], 1e-9):.2f},"
        f" of limit {new['of_limit'] / max(old['of_limit'], 1e-9):.3f}"
    )
    ok = verdict("start: <= 2% of answers 429", new["429_share"] <= 0.02, f"{new['429_share']:.2%}")
    ok &= verdict("start: >= 0.9 of the limit", new["of_limit"] >= 0.9, f"{new['of_limit']:.3f}")
    return ok


async def main(args: argparse.Namespace) -> None:
    # The deliberately hard cases test extraction, not rate limits: leave them out.
    hard = set(hard_case_ids(args.records * 2).values())
    records = [r for r in tickets(args.records * 2, seed=7) if r["ticket_id"] not in hard]
    records = records[: args.records]
    if args.only == "start":
        await start(records, args.rounds)
        return
    for kind in ("requests", "tokens"):
        if args.only in (None, kind):
            await single(kind, records)
    if args.only in (None, "workers"):
        await workers(records)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=600)
    parser.add_argument("--only", choices=["requests", "tokens", "workers", "start"])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --only start")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        asyncio.run(worker(json.loads(arguments.worker[0]), json.loads(arguments.worker[1])))
    else:
        asyncio.run(main(arguments))
