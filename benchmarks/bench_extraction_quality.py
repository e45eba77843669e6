"""Extraction quality and token cost under sloppy JSON, next to the ideal model, one run.

The same 1,000 support tickets (`scripts/make_sample_data.py`'s `generate(1000,
seed)`, deterministic) go through the plugin's batch extraction (`aextract_chunk.fn`,
the coroutine inside the `extract_chunk` task: real `ChatRunner`, real `AsyncOpenAI`
client, real HTTP) into `SupportTicket`, once against the simulator's `ideal`
profile and once against `sloppy-json` (~19% of first answers fenced, wrapped in
prose, malformed, truncated, mistyped, incomplete or lazy; 5% of re-prompts fail
again). No record cache (`cache=False`), so every record is really sent.

Some tickets are invalid by design, even for a perfect model (the sample data's
hard cases, e.g. an amount in Swiss francs, which `SupportTicket.currency` does not
allow). Validity under `sloppy-json` is therefore counted over the records that the
`ideal` run extracts validly; the designed failures are listed separately.

Prints % valid (target >= 99.5%), total tokens sloppy vs ideal and their ratio
(target <= 1.25), and how the sloppy answers were fixed: locally (fences or prose
stripped, JSON repaired), by a re-prompt, or by a retry with more room.

Run: python benchmarks/bench_extraction_quality.py [--records 1000] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections import Counter
from typing import Any

from _common import chat_model, extract_tickets, hard_case_ids, tickets, verdict

from prefect_openai_chat.results import RecordOutcome
from prefect_openai_chat.simulator import Simulator

VALID_TARGET = 99.5
TOKEN_TARGET = 1.25
CONCURRENCY = 16


async def run_profile(
    profile: str, records: list[dict[str, Any]], seed: int
) -> tuple[list[RecordOutcome], float, dict[str, Any]]:
    """Extract every record against a fresh simulator of `profile`; outcomes, seconds, stats."""
    async with Simulator(profile=profile, seed=seed, subprocess=True) as sim:
        model = chat_model(sim.base_url, sim.api_key)
        start = time.perf_counter()
        report = await extract_tickets(model, records, CONCURRENCY, cache=False)
        elapsed = time.perf_counter() - start
        stats = sim.stats()
    return (
        report.records,
        elapsed,
        {"requests": stats.requests, "faults": stats.by_fault, "reprompts": stats.reprompts},
    )


def how_fixed(outcome: RecordOutcome) -> str:
    """How a valid record got there."""
    if outcome.reprompts:
        return "re-prompt"
    if outcome.repaired:
        return "local repair"
    if outcome.calls > 1:
        return "retry with more room"
    return "first answer"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7, help="data and simulator seed")
    args = parser.parse_args()
    logging.getLogger("prefect_openai_chat").setLevel(logging.WARNING)

    records = tickets(args.records, seed=args.seed)
    hard = {ticket_id: kind for kind, ticket_id in hard_case_ids(args.records).items()}
    assert len({r["ticket_id"] for r in records}) == len(records)
    assert len({(r["subject"], r["body"]) for r in records}) == len(records), "records not distinct"

    ideal, ideal_s, ideal_stats = asyncio.run(run_profile("ideal", records, args.seed))
    sloppy, sloppy_s, sloppy_stats = asyncio.run(run_profile("sloppy-json", records, args.seed))

    designed = [o for o in ideal if not o.ok]
    base = [i for i, o in enumerate(ideal) if o.ok]
    valid = [i for i in base if sloppy[i].ok]
    valid_pct = 100.0 * len(valid) / len(base)
    ideal_tokens = sum(o.usage.total_tokens for o in ideal)
    sloppy_tokens = sum(o.usage.total_tokens for o in sloppy)
    token_ratio = sloppy_tokens / ideal_tokens
    fixed = Counter(how_fixed(sloppy[i]) for i in valid)
    needed_fix = len(valid) - fixed["first answer"]
    lost = [sloppy[i] for i in base if not sloppy[i].ok]

    print(
        f"{len(records)} distinct tickets (generate(count={args.records}, seed={args.seed})),"
        f" schema SupportTicket, concurrency {CONCURRENCY}, max_reprompts 2, cache off"
    )
    print(
        f"ideal:       {sum(o.ok for o in ideal):5d} valid of {len(ideal)},"
        f" {ideal_tokens:9d} tokens, {ideal_stats['requests']} requests, {ideal_s:.1f}s"
    )
    print(
        f"sloppy-json: {sum(o.ok for o in sloppy):5d} valid of {len(sloppy)}, {sloppy_tokens:9d}"
        f" tokens, {sloppy_stats['requests']} requests, {sloppy_s:.1f}s;"
        f" simulator faults {dict(sorted(sloppy_stats['faults'].items()))}"
    )
    print(
        "designed failures (invalid on ideal too, excluded from the validity base):"
        f" {len(designed)}"
    )
    for o in designed:
        print(
            f"  {o.key} ({hard.get(o.key, 'not a listed hard case')}):"
            f" {o.outcome}: {(o.reason or '')[:140]}"
        )
    print(
        f"valid with sloppy-json: {len(valid)} of the {len(base)} records ideal extracts"
        f" = {valid_pct:.2f}% (target >= {VALID_TARGET}%)"
    )
    for o in lost:
        print(f"  lost {o.key}: {o.outcome}: {(o.reason or '')[:160]}")
    print(
        f"total tokens: sloppy-json {sloppy_tokens} / ideal {ideal_tokens} = {token_ratio:.3f}"
        f" (target <= {TOKEN_TARGET}; all {len(records)} records, every attempt)"
    )
    print(
        f"how the {len(valid)} valid sloppy records got there: "
        + ", ".join(
            f"{k} {fixed[k]}"
            for k in ("first answer", "local repair", "re-prompt", "retry with more room")
        )
    )
    if needed_fix:
        print(
            f"of the {needed_fix} that needed a fix: local repair"
            f" {100 * fixed['local repair'] / needed_fix:.1f}%, re-prompt"
            f" {100 * fixed['re-prompt'] / needed_fix:.1f}%, retry with more room"
            f" {100 * fixed['retry with more room'] / needed_fix:.1f}%"
        )
    verdict(
        "valid under sloppy-json",
        valid_pct >= VALID_TARGET,
        f"{valid_pct:.2f}%, target >= {VALID_TARGET}%",
    )
    verdict(
        "token cost sloppy / ideal",
        token_ratio <= TOKEN_TARGET,
        f"ratio {token_ratio:.3f}, target <= {TOKEN_TARGET}",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
