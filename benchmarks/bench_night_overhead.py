"""The whole `extract_records` night next to a hand-written loop writing the same JSONL.

In one run, against one simulator (`ideal`, latency 0, in its own process so that it
does not share the client's GIL or CPU clock), the same sample tickets are extracted
into `SupportTicket` at concurrency 16, in alternating rounds:

* plugin: the `extract_records` flow under `prefect_test_harness` (its server in
  another process), as a night runs it: a fresh SQLite record ledger each round
  (every record looked up, claimed and completed), the JSONL output and quarantine
  sinks, the run's artifacts and events, chunks of `RunOptions.chunk_size` (500, or
  `--chunk-size`) as `extract_chunk` tasks;
* bare: one `AsyncOpenAI` client (max_retries=0) under `asyncio.Semaphore(16)`, per
  record the same request (the same system message and `response_format`, built
  once), `json.loads` of the content, `SupportTicket.model_validate`, and the row
  (`{"_key": ticket_id, **model_dump(mode="json")}`) written as one JSON line to a
  temporary file that is fsynced and moved into place, as hand-written code would.

Both read the tickets from one JSONL file (a list this long is too big for a flow
run's parameters), send the same requests and write the same rows. Figures, medians over the
rounds: records per second (target plugin / bare >= 0.9) and client CPU per record,
the CPU time of this process only (`time.process_time`: every thread of the client,
not the simulator's or the Prefect server's process; target plugin <= 1.0x bare).

Each round also times an empty `@flow` run: what any Prefect flow run costs before and
after its body (creating the run, its states, and Prefect 3.9's heartbeat thread, which
the run's end joins while it sleeps out its current second). The verdict is on the whole
night; the night less that floor is printed beside it, for what the plugin itself adds.

Run: python benchmarks/bench_night_overhead.py [--records 5000] [--rounds 3] [--chunk-size N]
     add --profile to cProfile one plugin night instead (stats saved to the temp
     folder as bench_night_plugin.prof).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import os
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import MODEL, chat_model, median, rounds, ticket_spec, tickets, verdict
from openai import AsyncOpenAI

from prefect_openai_chat.examples.tickets import TICKET_INSTRUCTIONS, TICKET_PROMPT, SupportTicket
from prefect_openai_chat.extraction.prompts import build_request, resolve_mode
from prefect_openai_chat.simulator import Simulator

RATE_TARGET = 0.90
CPU_TARGET = 1.0
CONCURRENCY = 16


def plugin_night(
    model: Any, source: Path, count: int, folder: Path, name: str, chunk_size: int | None = None
) -> int:
    """The `extract_records` night over the JSONL file `source`; the rows in its output."""
    from prefect_openai_chat import RunOptions
    from prefect_openai_chat.flows import extract_records

    sizes = {} if chunk_size is None else {"chunk_size": chunk_size}
    summary = extract_records(
        source=str(source),
        output=str(folder / f"{name}.jsonl"),
        quarantine=str(folder / f"{name}-quarantine.jsonl"),
        spec=ticket_spec(),
        chat_model=model,
        run=RunOptions(
            concurrency=CONCURRENCY, cache=str(folder / f"{name}-ledger.sqlite"), **sizes
        ),
    )
    assert summary["records"] == count, summary
    return int(summary["valid"])


def bare_request() -> tuple[dict[str, Any], dict[str, Any]]:
    """The system message and request parameters the plugin sends, built once."""
    mode = resolve_mode("auto", MODEL)
    messages, params = build_request(SupportTicket, "-", TICKET_INSTRUCTIONS, mode, model=MODEL)
    assert [m["role"] for m in messages] == ["system", "user"]
    return messages[0], params


async def bare_night(client: AsyncOpenAI, source: Path, folder: Path, name: str) -> int:
    """The hand-written loop over the JSONL file `source`; the number of rows it wrote."""
    with source.open(encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    system, params = bare_request()
    semaphore = asyncio.Semaphore(CONCURRENCY)
    target = folder / f"{name}.jsonl"
    tmp = folder / f".{name}.jsonl.tmp"

    async def one(record: dict[str, Any]) -> dict[str, Any] | None:
        messages = [system, {"role": "user", "content": TICKET_PROMPT.format(**record)}]
        async with semaphore:
            completion = await client.chat.completions.create(
                model=MODEL, messages=messages, **params
            )
        try:
            ticket = SupportTicket.model_validate(
                json.loads(completion.choices[0].message.content or "")
            )
        except ValueError:  # json.JSONDecodeError and pydantic.ValidationError
            return None
        return {"_key": str(record["ticket_id"]), **ticket.model_dump(mode="json")}

    rows = await asyncio.gather(*(one(r) for r in records))
    written = 0
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            if row is not None:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                written += 1
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    return written


def empty_flow_run() -> int:
    """One run of a flow that does nothing: the floor every Prefect flow run pays."""
    from prefect import flow

    @flow(name="empty-night", persist_result=False)
    def empty_night() -> int:
        return 0

    return empty_night()


def timed(work: Any) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of this process and the result of `work()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def run(args: argparse.Namespace) -> int:
    from prefect.testing.utilities import prefect_test_harness

    records = tickets(args.records, seed=args.seed)
    with (
        prefect_test_harness(server_startup_timeout=300),
        Simulator(profile="ideal", seed=args.seed, subprocess=True) as sim,
        tempfile.TemporaryDirectory() as tmp,
    ):
        folder = Path(tmp)
        model = chat_model(sim.base_url, sim.api_key)
        loop = asyncio.new_event_loop()
        client = AsyncOpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)

        source, warm = folder / "tickets.jsonl", folder / "warm-up.jsonl"
        for path, items in ((source, records), (warm, records[:200])):
            path.write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")

        def bare(name: str, path: Path) -> int:
            return loop.run_until_complete(bare_night(client, path, folder, name))

        plugin_night(model, warm, 200, folder, "warm-plugin")  # imports, connections
        bare("warm-bare", warm)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            wall, cpu, _ = timed(
                lambda: plugin_night(model, source, len(records), folder, "profiled")
            )
            profiler.disable()
            path = Path(tempfile.gettempdir()) / "bench_night_plugin.prof"
            profiler.dump_stats(path)
            print(
                f"plugin night under cProfile: {len(records) / wall:.1f} records/s,"
                f" {1000 * cpu / len(records):.2f} ms CPU per record; stats in {path}"
            )
            pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
            loop.run_until_complete(client.close())
            loop.close()
            return 0
        empty_flow_run()
        sim.reset()
        floor: list[float] = []
        less_floor: list[float] = []  # the plugin's records/s without the flow-run floor
        rate: dict[str, list[float]] = {"plugin": [], "bare": []}
        cpu_ms: dict[str, list[float]] = {"plugin": [], "bare": []}
        rows: dict[str, int] = {}
        for rnd in range(args.rounds):
            order = ["plugin", "bare"] if rnd % 2 == 0 else ["bare", "plugin"]
            for name in order:
                label = f"{name}-{rnd}"
                if name == "plugin":
                    wall, cpu, rows[name] = timed(
                        lambda label=label: plugin_night(
                            model, source, len(records), folder, label, args.chunk_size
                        )
                    )
                else:
                    wall, cpu, rows[name] = timed(lambda label=label: bare(label, source))
                rate[name].append(len(records) / wall)
                cpu_ms[name].append(1000 * cpu / len(records))
            floor.append(timed(empty_flow_run)[0])
            plugin_wall = len(records) / rate["plugin"][-1]
            less_floor.append(len(records) / (plugin_wall - floor[-1]))
            plugin_rows = (folder / f"plugin-{rnd}.jsonl").read_text().splitlines()
            bare_rows = (folder / f"bare-{rnd}.jsonl").read_text().splitlines()
            assert sorted(map(json.loads, plugin_rows), key=lambda r: r["_key"]) == sorted(
                map(json.loads, bare_rows), key=lambda r: r["_key"]
            ), "the two sides wrote different rows"
            print(
                f"round {rnd + 1}/{args.rounds}: plugin {rate['plugin'][-1]:.1f}/s"
                f" {cpu_ms['plugin'][-1]:.2f} ms CPU/record, bare {rate['bare'][-1]:.1f}/s"
                f" {cpu_ms['bare'][-1]:.2f} ms CPU/record; same rows;"
                f" empty flow run {floor[-1]:.2f} s",
                flush=True,
            )
        stats = sim.stats()
        loop.run_until_complete(client.close())
        loop.close()
    plugin, raw = median(rate["plugin"]), median(rate["bare"])
    plugin_cpu, raw_cpu = median(cpu_ms["plugin"]), median(cpu_ms["bare"])
    print(
        f"\n{len(records)} tickets -> SupportTicket, simulator ideal latency 0 (own process),"
        f" concurrency {CONCURRENCY}, {args.rounds} alternating rounds;"
        f" simulator saw {stats.requests} requests, by status {stats.by_status}"
    )
    print(
        f"plugin (extract_records night, ledger, JSONL, artifacts): {plugin:8.1f} records/s"
        f"  rounds {rounds(rate['plugin'])}  rows {rows['plugin']}/{len(records)}"
        f"  CPU {plugin_cpu:.2f} ms/record {rounds(cpu_ms['plugin'], '{:.2f}')}"
    )
    print(
        f"bare AsyncOpenAI + semaphore + JSONL:                      {raw:8.1f} records/s"
        f"  rounds {rounds(rate['bare'])}  rows {rows['bare']}/{len(records)}"
        f"  CPU {raw_cpu:.2f} ms/record {rounds(cpu_ms['bare'], '{:.2f}')}"
    )
    ratio, cpu_ratio = plugin / raw, plugin_cpu / raw_cpu
    print(
        f"an empty flow run: {median(floor):.2f} s {rounds(floor, '{:.2f}')}; the plugin's night"
        f" less it: {median(less_floor):.1f} records/s, {median(less_floor) / raw:.3f} of bare"
    )
    print(f"throughput ratio plugin / bare: {ratio:.3f} (target >= {RATE_TARGET:.2f})")
    print(f"client CPU ratio plugin / bare: {cpu_ratio:.3f} (target <= {CPU_TARGET:.2f})")
    ok = verdict(
        "night throughput", ratio >= RATE_TARGET, f"ratio {ratio:.3f}, target >= {RATE_TARGET}"
    )
    ok &= verdict(
        "night client CPU per record",
        cpu_ratio <= CPU_TARGET,
        f"{plugin_cpu:.2f} / {raw_cpu:.2f} ms = {cpu_ratio:.3f}, target <= {CPU_TARGET}",
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="RunOptions.chunk_size (default: its own)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one plugin night")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry lookups
    logging.getLogger("prefect").setLevel(logging.WARNING)
    logging.getLogger("prefect_openai_chat").setLevel(logging.WARNING)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
