"""Throughput of `extract_chunk` next to bare `AsyncOpenAI` calls under a semaphore.

In one run, against one simulator (`ideal`, latency 0, in its own process so that it
does not share the client's GIL), the same 5,000 support tickets are extracted into
`SupportTicket`, in alternating rounds:

* plugin: `aextract_chunk.fn(...)`, the coroutine inside the `extract_chunk` task (real
  `ChatRunner` with its retry policy, circuit guard and retry budget, real
  `AsyncOpenAI` client, cache off), at concurrency 16;
* bare: one `AsyncOpenAI` client (max_retries=0), `asyncio.Semaphore(16)`, per record
  the same request (the same system message and `response_format`, built once, and
  the ticket formatted into the user message), then `json.loads` of the content and
  `SupportTicket.model_validate`, as hand-written code would.

Both sides send byte-for-byte the same requests and get the same answers. Records
per second, medians over the rounds; target: plugin / bare >= 0.80.

Run: python benchmarks/bench_batch_throughput.py [--records 5000] [--rounds 3]
     add --profile to cProfile one plugin and one bare round instead (stats also saved
     to the temp folder as bench_batch_plugin.prof / bench_batch_bare.prof).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import MODEL, chat_model, extract_tickets, median, rounds, tickets, verdict
from openai import AsyncOpenAI

from prefect_openai_chat.examples.tickets import TICKET_INSTRUCTIONS, TICKET_PROMPT, SupportTicket
from prefect_openai_chat.extraction.prompts import build_request, resolve_mode
from prefect_openai_chat.simulator import Simulator

TARGET = 0.80
CONCURRENCY = 16


async def plugin_round(model: Any, records: list[dict[str, Any]]) -> tuple[float, int]:
    """Records per second through the plugin's batch extraction, and how many were valid."""
    start = time.perf_counter()
    report = await extract_tickets(model, records, CONCURRENCY, cache=False)
    return len(records) / (time.perf_counter() - start), report.valid


def bare_request() -> tuple[dict[str, Any], dict[str, Any]]:
    """The system message and request parameters the plugin sends, built once."""
    mode = resolve_mode("auto", MODEL)
    messages, params = build_request(SupportTicket, "-", TICKET_INSTRUCTIONS, mode, model=MODEL)
    assert [m["role"] for m in messages] == ["system", "user"]
    return messages[0], params


async def bare_round(client: AsyncOpenAI, records: list[dict[str, Any]]) -> tuple[float, int]:
    """Records per second with plain calls under a semaphore, and how many were valid."""
    system, params = bare_request()
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(record: dict[str, Any]) -> bool:
        messages = [system, {"role": "user", "content": TICKET_PROMPT.format(**record)}]
        async with semaphore:
            completion = await client.chat.completions.create(
                model=MODEL, messages=messages, **params
            )
        try:
            SupportTicket.model_validate(json.loads(completion.choices[0].message.content or ""))
        except ValueError:  # json.JSONDecodeError and pydantic.ValidationError
            return False
        return True

    start = time.perf_counter()
    valid = await asyncio.gather(*(one(r) for r in records))
    return len(records) / (time.perf_counter() - start), sum(valid)


async def run(args: argparse.Namespace) -> int:
    records = tickets(args.records, seed=args.seed)
    async with Simulator(profile="ideal", seed=args.seed, subprocess=True) as sim:
        model = chat_model(sim.base_url, sim.api_key)
        client = AsyncOpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)
        await plugin_round(model, records[:200])  # warm up connections, caches, imports
        await bare_round(client, records[:200])
        if args.profile:
            for name in ("plugin", "bare"):
                profiler = cProfile.Profile()
                profiler.enable()
                if name == "plugin":
                    rate, _ = await plugin_round(model, records)
                else:
                    rate, _ = await bare_round(client, records)
                profiler.disable()
                profiler.dump_stats(Path(tempfile.gettempdir()) / f"bench_batch_{name}.prof")
                total = sum(row[2] for row in pstats.Stats(profiler).stats.values())  # type: ignore[attr-defined]
                print(
                    f"\n=== {name} round under cProfile: {rate:.1f} records/s,"
                    f" {1000 * total / len(records):.2f} profiled ms per record ==="
                )
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
            await client.close()
            return 0
        sim.reset()
        figures: dict[str, list[float]] = {"plugin": [], "bare": []}
        cpu: dict[str, list[float]] = {"plugin": [], "bare": []}
        valid: dict[str, int] = {}
        for rnd in range(args.rounds):
            order = ["plugin", "bare"] if rnd % 2 == 0 else ["bare", "plugin"]
            for name in order:
                cpu_start = time.process_time()
                if name == "plugin":
                    rate, valid[name] = await plugin_round(model, records)
                else:
                    rate, valid[name] = await bare_round(client, records)
                figures[name].append(rate)
                cpu[name].append(1000 * (time.process_time() - cpu_start) / len(records))
            print(
                f"round {rnd + 1}/{args.rounds}: plugin {figures['plugin'][-1]:.1f}/s,"
                f" bare {figures['bare'][-1]:.1f}/s",
                flush=True,
            )
        stats = sim.stats()
        await client.close()
    plugin, bare = median(figures["plugin"]), median(figures["bare"])
    ratio = plugin / bare
    print(
        f"\n{len(records)} tickets -> SupportTicket, simulator ideal latency 0 (own process),"
        f" concurrency {CONCURRENCY}, {args.rounds} alternating rounds;"
        f" simulator saw {stats.requests} requests, by status {stats.by_status}"
    )
    print(
        f"plugin (aextract_chunk.fn):  {plugin:8.1f} records/s"
        f"  rounds {rounds(figures['plugin'])}"
        f"  valid {valid['plugin']}/{len(records)}"
    )
    print(
        f"bare AsyncOpenAI + semaphore: {bare:8.1f} records/s  rounds {rounds(figures['bare'])}"
        f"  valid {valid['bare']}/{len(records)}"
    )
    print(
        f"client CPU per record (this process; the simulator runs in its own):"
        f" plugin {median(cpu['plugin']):.2f} ms, bare {median(cpu['bare']):.2f} ms"
        f" (ratio bare / plugin {median(cpu['bare']) / median(cpu['plugin']):.3f}, info)"
    )
    print(f"ratio plugin / bare: {ratio:.3f} (target >= {TARGET:.2f})")
    verdict("extract_chunk throughput", ratio >= TARGET, f"ratio {ratio:.3f}, target >= {TARGET}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="cProfile one plugin round")
    args = parser.parse_args()
    logging.getLogger("prefect_openai_chat").setLevel(logging.WARNING)
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
