"""Cheaper re-asks: a night whose first answers are spoiled about half the time, re-asked
for the invalid fields only (the default) or with the whole exchange, next to the same
night with no faults; and what such a night bills through the Batch API.

1. `--only tokens`: the same 200 support tickets (`generate(200, seed)`) are extracted
   into `SupportTicket` three times, each against a fresh simulator in its own process:
   `ideal` (no faults), and the `spoiled` mix (about 46% of first answers: bad enum
   values and wrong types, missing fields, truncation, prose, fences, 500s; 5% of
   re-asks fail again) once with `reask_scope="whole"` (every re-ask carries the whole
   first exchange: the plugin before issue 26) and once with `reask_scope="fields"` (the
   default). Each record goes through `run_extraction` over the real `ChatRunner` (retry
   tiers, real `AsyncOpenAI` client, real HTTP), 16 at a time. A record is right when
   its value equals the fault-free night's. Prints records right, total tokens against
   the fault-free night, tokens per right record, and the requests by kind. Tokens are
   what the simulator bills, as the API does: a `json_schema` format's schema included
   (about 500 tokens for the whole `SupportTicket`, tens for a few of its fields); the
   ratio without the schemas (how the simulator billed before 2026-12-07) is printed too.
   Targets: >= 99.5% right, tokens <= 1.25x the fault-free night, tokens per right record
   >= 10% below the whole re-ask's.
2. `--only batch`: the same tickets through `extract_records` with default options,
   online and with `via="batch"`, against one `spoiled` simulator each: billed cost
   (first answers at the batch price, re-asks as the defaults send them). Target: the
   Batch API night <= 0.55x the online one.

Run: python benchmarks/bench_reask.py [--records 200] [--rounds 1] [--only tokens|batch]
     [--mode auto|json_schema|json_object|tools] (the tokens part's mode; `json_object`
     puts the schema in the system message, as on models without structured outputs)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _common import chat_model, ticket_spec, tickets, verdict

from prefect_openai_chat.simulator import Simulator

SPOILED = {  # about 46% of first answers, one fault each
    "wrong-types": 0.14,
    "missing-fields": 0.10,
    "truncated-json": 0.08,
    "prose-json": 0.05,
    "fenced-json": 0.05,
    "500": 0.04,
}
SPOILED_SETTINGS: dict[str, Any] = {"fault_rates": SPOILED, "reprompt_failure_rate": 0.05}
CONCURRENCY = 16
RIGHT_TARGET = 99.5
TOKEN_TARGET = 1.25
PER_RIGHT_TARGET = 0.90
BATCH_TARGET = 0.55


async def night(
    records: list[dict[str, Any]], seed: int, scope: str | None, mode: str = "auto"
) -> dict[str, Any]:
    """One night of `records` in `mode`: `scope` None is the fault-free night."""
    from prefect_openai_chat.blocks.assembly import RUNNERS
    from prefect_openai_chat.examples.tickets import (
        TICKET_INSTRUCTIONS,
        TICKET_PROMPT,
        SupportTicket,
    )
    from prefect_openai_chat.extraction import ExtractionOptions, run_extraction
    from prefect_openai_chat.tasks.extract import runner_call
    from prefect_openai_chat.tokens.counting import response_format_tokens

    settings = {} if scope is None else SPOILED_SETTINGS
    async with Simulator(profile="ideal", seed=seed, subprocess=True, **settings) as sim:
        runner = RUNNERS.build(chat_model(sim.base_url, sim.api_key))
        scoped = {"reask_scope": scope or "fields"}
        if "reask_scope" not in ExtractionOptions.__dataclass_fields__:
            scoped = {}  # the code before issue 26 (`PYTHONPATH=<main before it>`): whole re-asks
        options = ExtractionOptions(
            model=runner.settings.model,
            instructions=TICKET_INSTRUCTIONS,
            mode=mode,
            on_error="return",
            **scoped,
        )
        gate = asyncio.Semaphore(CONCURRENCY)
        spent: dict[str, list[int]] = {}  # request kind -> [requests, prompt, completion]
        schemas = [0]  # prompt tokens of the billed requests' response format schemas
        send = runner_call(runner)

        async def call(messages: list[dict[str, Any]], params: dict[str, Any]) -> Any:
            kind = request_kind(messages, params)
            schema = response_format_tokens(params.get("response_format"), options.model)
            try:
                result = await send(messages, params)
            except Exception as exc:  # a cut answer comes as an error holding what was paid
                result = getattr(exc, "partial", None)
                if result is None:
                    raise
                kind += " (cut)"
                add_spent(spent, kind, result.usage)
                schemas[0] += schema
                raise
            add_spent(spent, kind, result.usage)
            schemas[0] += schema
            return result

        async def one(record: dict[str, Any]) -> Any:
            async with gate:
                text = TICKET_PROMPT.format(**record)
                return await run_extraction(call, SupportTicket, text, options)

        started = time.perf_counter()
        results = await asyncio.gather(*(one(r) for r in records))
        stats = sim.stats()
    kinds: Counter[str] = Counter()
    for r in results:
        kinds["first"] += 1
        kinds["re-ask"] += r.reprompts
        kinds["more room"] += sum(f == "length" for f in r.finish_reasons[:-1] or [])
    return {
        "results": results,
        "tokens": sum(r.usage.total_tokens for r in results),
        "schema_tokens": schemas[0],
        "requests": stats.requests,
        "kinds": kinds,
        "spent": spent,
        "faults": dict(sorted(stats.by_fault.items())),
        "seconds": time.perf_counter() - started,
    }


def request_kind(messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """What a request of the extraction loop is, read from its last user message."""
    if messages[-1]["role"] != "user" or not any(m["role"] == "assistant" for m in messages):
        return "re-send" if "max_completion_tokens" in params else "first"
    said = str(messages[-1]["content"])
    if said.startswith("Fix"):
        return "re-ask (fields)"
    if said.startswith(("Your answer was cut off", "Your answer used placeholders")):
        return "the rest"
    return "re-ask (whole)"


def add_spent(spent: dict[str, list[int]], kind: str, usage: Any) -> None:
    row = spent.setdefault(kind, [0, 0, 0])
    row[0] += 1
    row[1] += usage.prompt_tokens
    row[2] += usage.completion_tokens


def spent_line(spent: dict[str, list[int]]) -> str:
    """`kind n x (prompt + completion)` per request kind, as means."""
    return "; ".join(
        f"{kind} {n} x ({p / n:.0f} + {c / n:.0f})" for kind, (n, p, c) in sorted(spent.items())
    )


def figures(ideal: dict[str, Any], spoiled: dict[str, Any]) -> dict[str, Any]:
    base = [i for i, r in enumerate(ideal["results"]) if r.ok]
    right = sum(
        spoiled["results"][i].ok and spoiled["results"][i].value == ideal["results"][i].value
        for i in base
    )
    valid = sum(spoiled["results"][i].ok for i in base)
    return {
        "right": right,
        "valid": valid,
        "base": len(base),
        "right_pct": 100.0 * right / len(base),
        "tokens": spoiled["tokens"],
        "ratio": spoiled["tokens"] / ideal["tokens"],
        "ratio_without_schemas": (spoiled["tokens"] - spoiled["schema_tokens"])
        / (ideal["tokens"] - ideal["schema_tokens"]),
        "per_right": spoiled["tokens"] / max(right, 1),
    }


def tokens_part(records: list[dict[str, Any]], rounds: int, seed: int, mode: str) -> None:
    rows: dict[str, list[dict[str, Any]]] = {"whole": [], "fields": []}
    for n in range(rounds):
        sim_seed = seed + n
        ideal = asyncio.run(night(records, sim_seed, None, mode))
        print(
            f"round {n + 1} (simulator seed {sim_seed}): fault-free night: {ideal['tokens']}"
            f" tokens, {sum(r.ok for r in ideal['results'])} valid, {ideal['requests']}"
            f" requests, {ideal['seconds']:.1f} s; requests x (prompt + completion tokens):"
            f" {spent_line(ideal['spent'])}"
        )
        for scope in ("whole", "fields"):  # alternating sides, one fresh simulator each
            spoiled = asyncio.run(night(records, sim_seed, scope, mode))
            f = figures(ideal, spoiled)
            rows[scope].append(f)
            tally = spoiled["kinds"]
            print(
                f"  spoiled, re-ask {scope:<6}: right {f['right']}/{f['base']}"
                f" ({f['right_pct']:.2f}%; valid {f['valid']}), {f['tokens']} tokens"
                f" = {f['ratio']:.3f}x fault-free ({f['ratio_without_schemas']:.3f}x without"
                f" the schemas' {spoiled['schema_tokens']} tokens),"
                f" {f['per_right']:.1f} per right record;"
                f" calls: first {tally['first']}, re-asks {tally['re-ask']}, more room"
                f" {tally['more room']}; HTTP requests {spoiled['requests']};"
                f" faults {spoiled['faults']}\n    requests x (prompt + completion tokens):"
                f" {spent_line(spoiled['spent'])}"
            )
    med = {
        scope: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for scope, rs in rows.items()
    }
    whole, fields = med["whole"], med["fields"]
    per_right_ratio = fields["per_right"] / whole["per_right"]
    print(
        f"\nmedians of {rounds} round(s): tokens per right record: fields {fields['per_right']:.1f}"
        f" / whole {whole['per_right']:.1f} = {per_right_ratio:.3f};"
        f" tokens vs fault-free: fields {fields['ratio']:.3f}, whole {whole['ratio']:.3f}"
        f" (without the response formats' schemas, as counted before 2026-12-07: fields"
        f" {fields['ratio_without_schemas']:.3f}, whole {whole['ratio_without_schemas']:.3f});"
        f" right: fields {fields['right_pct']:.2f}%, whole {whole['right_pct']:.2f}%"
    )
    verdict(
        "right with partial re-asks",
        fields["right_pct"] >= RIGHT_TARGET,
        f"{fields['right_pct']:.2f}%, target >= {RIGHT_TARGET}%",
    )
    verdict(
        "tokens vs the fault-free night",
        fields["ratio"] <= TOKEN_TARGET,
        f"{fields['ratio']:.3f}, target <= {TOKEN_TARGET}",
    )
    verdict(
        "tokens per right record vs whole re-asks",
        per_right_ratio <= PER_RIGHT_TARGET,
        f"{per_right_ratio:.3f}, target <= {PER_RIGHT_TARGET}",
    )


def batch_night(model: Any, records: list[dict[str, Any]], folder: Path, **options: Any) -> Any:
    """One `extract_records` night of `records`; its summary, checked exactly once."""
    from prefect_openai_chat import RunOptions
    from prefect_openai_chat.flows import extract_records

    name = options.pop("name")
    started = time.perf_counter()
    summary: dict[str, Any] = extract_records(
        source=records,
        output=str(folder / f"{name}.jsonl"),
        quarantine=str(folder / f"{name}-quarantine.jsonl"),
        spec=ticket_spec(),
        chat_model=model,
        run=RunOptions(cache=False, concurrency=CONCURRENCY, **options),
    )
    summary["wall_s"] = time.perf_counter() - started
    keys = [json.loads(line)["_key"] for line in (folder / f"{name}.jsonl").open()]
    bad = [json.loads(line)["key"] for line in (folder / f"{name}-quarantine.jsonl").open()]
    summary["exactly_once"] = sorted(keys + bad) == sorted(str(r["ticket_id"]) for r in records)
    return summary


def batch_part(records: list[dict[str, Any]], seed: int) -> None:
    import os

    from prefect.testing.utilities import prefect_test_harness

    logging.getLogger("prefect").setLevel(logging.WARNING)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    nights = {
        "online (defaults)": {},
        'via="batch" (defaults)': {"via": "batch", "batch_api": {"poll_interval_s": 0.2}},
        'via="batch", reask="online"': {
            "via": "batch",
            "batch_api": {"poll_interval_s": 0.2, "reask": "online"},
        },
    }
    runs = {}
    with (
        prefect_test_harness(server_startup_timeout=300),
        Simulator(profile="ideal", seed=seed, batch_duration_s=2.0) as sim,
        tempfile.TemporaryDirectory() as tmp,
    ):
        model = chat_model(sim.base_url, sim.api_key, backoff_base_s=0.05)
        for n, (label, options) in enumerate(nights.items()):
            sim.configure(**SPOILED_SETTINGS)
            sim.reset()
            runs[label] = batch_night(model, records, Path(tmp), name=f"night{n}", **options)
            stats = sim.stats()
            s = runs[label]
            print(
                f"  {label}: {s['records']} records, {s['valid']} valid, {s['quarantined']}"
                f" quarantined, {s['reprompted']} re-asked, {s['total_tokens']} tokens,"
                f" billed ${s['cost_usd']:.6f}, {s['wall_s']:.1f} s; {stats.batches_created}"
                f" batch(es), {stats.batch_requests} batch lines, {stats.requests} online"
                f" requests; exactly once: {s['exactly_once']}"
            )
    online = runs["online (defaults)"]["cost_usd"]
    default = runs['via="batch" (defaults)']["cost_usd"]
    fast = runs['via="batch", reask="online"']["cost_usd"]
    print(
        f"billed: batch night with defaults / online = {default / online:.3f};"
        f' with reask="online" = {fast / online:.3f}'
    )
    verdict(
        "Batch API night with default options vs online",
        default / online <= BATCH_TARGET,
        f"{default / online:.3f}, target <= {BATCH_TARGET}",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1, help="rounds (simulator seeds)")
    parser.add_argument("--seed", type=int, default=7, help="data and simulator seed")
    parser.add_argument("--only", choices=["tokens", "batch"])
    parser.add_argument(
        "--mode",
        default="auto",
        choices=["auto", "json_schema", "json_object", "tools"],
        help="extraction mode of the tokens part (auto: json_schema on this model)",
    )
    args = parser.parse_args()
    logging.getLogger("prefect_openai_chat").setLevel(logging.WARNING)
    records = tickets(args.records, seed=args.seed)
    print(
        f"{len(records)} tickets (generate(count={args.records}, seed={args.seed})), schema"
        f" SupportTicket, spoiled mix {SPOILED} ({100 * sum(SPOILED.values()):.0f}% of first"
        f" answers), 5% of re-asks fail again, mode {args.mode}"
    )
    if args.only in (None, "tokens"):
        tokens_part(records, args.rounds, args.seed, args.mode)
    if args.only in (None, "batch"):
        batch_part(records, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
