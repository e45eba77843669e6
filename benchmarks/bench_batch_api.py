"""Half-price nights: the demo's 300 tickets via the Batch API against online, in one run;
and how much of a long prompt the prompt cache serves.

1. `extract_records` over the demo's 300 sample tickets against one simulator, online and
   with `via="batch"` (re-asks online; and re-asks in a follow-up batch, the default),
   under the demo's `flaky` profile and under `sloppy-json` (about one first answer in
   five needs a re-ask). Every run must end every record exactly once. Targets: billed
   cost of the demo's batch night <= 0.55 x online, re-asks included; the same with
   sloppy JSON when re-asks go to a follow-up batch (with re-asks online at the online
   price the ratio is printed too).
2. An online extraction with a long instruction block (about 1,500 tokens): after a few
   warm-up records, the share of prompt tokens billed at the cached rate. Target: >= 0.7.

Run: python benchmarks/bench_batch_api.py [--records 300]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import chat_model, ticket_spec, verdict

from prefect_openai_chat.simulator import Simulator

LONG_INSTRUCTIONS = " ".join(
    f"Rule {n}: read the whole ticket before answering, keep the customer's own words for"
    " names and products, use ISO dates, never invent an order number, and prefer null"
    " to a guess when the text does not say it."
    for n in range(1, 46)
)


def demo_tickets(count: int) -> list[dict[str, Any]]:
    from prefect_openai_chat.examples.tickets import sample_tickets_path

    with sample_tickets_path().open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return rows[:count]


def night(
    model: Any, records: list[dict[str, Any]], folder: Path, name: str, instructions: str,
    **run: Any,
) -> dict[str, Any]:  # fmt: skip
    """One `extract_records` night over `records`; `run` holds `RunOptions` fields."""
    from prefect_openai_chat import RunOptions
    from prefect_openai_chat.flows import extract_records

    started = time.perf_counter()
    summary = extract_records(
        source=records,
        output=str(folder / f"{name}.jsonl"),
        quarantine=str(folder / f"{name}-quarantine.jsonl"),
        spec=ticket_spec(instructions),
        chat_model=model,
        run=RunOptions(cache=False, **run),
    )
    summary["wall_s"] = time.perf_counter() - started
    keys = [json.loads(line)["_key"] for line in (folder / f"{name}.jsonl").open()]
    bad = [json.loads(line)["key"] for line in (folder / f"{name}-quarantine.jsonl").open()]
    expected = sorted(str(r["ticket_id"]) for r in records)
    summary["exactly_once"] = sorted(keys + bad) == expected
    return summary


def show(label: str, s: dict[str, Any]) -> None:
    print(
        f"  {label}: {s['records']} records, {s['valid']} valid, {s['quarantined']}"
        f" quarantined, {s['reprompted']} re-asked, {s['total_tokens']} tokens,"
        f" billed ${s['cost_usd']:.6f}, {s['wall_s']:.1f} s, exactly once: {s['exactly_once']}"
    )


def compare(profile: str, model: Any, records: list, folder: Path, sim: Simulator) -> list:
    """Online, then batch with re-asks online, then batch with re-asks in a batch."""
    from prefect_openai_chat.examples.tickets import TICKET_INSTRUCTIONS

    common = {"instructions": TICKET_INSTRUCTIONS, "concurrency": 16}
    sim.configure(**profile_settings(profile))
    sim.reset()
    print(f"profile {profile}:")
    online = night(model, records, folder, name=f"{profile}-online", **common)
    show("online             ", online)
    results = []
    for reask in ("online", "batch"):
        sim.reset()
        options = {"poll_interval_s": 0.2, "reask": reask}
        batch = night(
            model, records, folder, name=f"{profile}-batch-{reask}", via="batch",
            batch_api=options, **common,
        )  # fmt: skip
        stats = sim.stats()
        show(f"batch, reask={reask:6s}", batch)
        print(
            f"    {stats.batches_created} batch(es), {stats.batch_requests} batch lines,"
            f" {stats.requests} online requests; the same attempts online:"
            f" ${batch['online_cost_usd']:.6f}; ratio to the online night"
            f" {batch['cost_usd'] / online['cost_usd']:.3f}"
        )
        results.append((reask, online, batch))
    return results


def profile_settings(profile: str) -> dict[str, Any]:
    from prefect_openai_chat.simulator import PROFILES

    return PROFILES[profile].model_dump(exclude={"seed"})


def main(args: argparse.Namespace) -> None:
    from prefect.testing.utilities import prefect_test_harness

    logging.getLogger("prefect").setLevel(logging.WARNING)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    records = demo_tickets(args.records)
    ok = True
    with (
        prefect_test_harness(server_startup_timeout=300),
        Simulator(profile="ideal", seed=5, batch_duration_s=2.0) as sim,
        tempfile.TemporaryDirectory() as tmp,
    ):
        folder = Path(tmp)
        model = chat_model(sim.base_url, sim.api_key, backoff_base_s=0.05)
        demo = compare("flaky", model, records, folder, sim)  # the demo's profile
        sloppy = compare("sloppy-json", model, records, folder, sim)
        for reask, online, batch in demo + sloppy:
            ok &= verdict(
                "every record exactly once",
                online["exactly_once"] and batch["exactly_once"],
                f"online {online['records']}, batch (reask={reask}) {batch['records']}",
            )
        _, online, batch = demo[0]
        ratio = batch["cost_usd"] / online["cost_usd"]
        ok &= verdict(
            "demo night (flaky): billed cost batch <= 0.55 x online, re-asks included",
            ratio <= 0.55,
            f"${batch['cost_usd']:.6f} / ${online['cost_usd']:.6f} = {ratio:.3f}",
        )
        _, online, batch = sloppy[1]
        ratio = batch["cost_usd"] / online["cost_usd"]
        ok &= verdict(
            "sloppy-json night, re-asks in a follow-up batch: billed cost <= 0.55 x online",
            ratio <= 0.55,
            f"${batch['cost_usd']:.6f} / ${online['cost_usd']:.6f} = {ratio:.3f}",
        )
        _, online, batch = sloppy[0]
        print(
            "  (sloppy-json with re-asks online, at the online price: ratio"
            f" {batch['cost_usd'] / online['cost_usd']:.3f})"
        )

        sim.configure(**profile_settings("ideal"))
        sim.reset()
        warm = 5
        night(model, records[:warm], folder, name="warm", instructions=LONG_INSTRUCTIONS)
        rest = night(
            model, records[warm : warm + 60], folder, name="cached", instructions=LONG_INSTRUCTIONS
        )
        share = rest["cached_tokens"] / rest["prompt_tokens"]
        full = rest["prompt_tokens"] * 0.15 / 1e6 + rest["completion_tokens"] * 0.60 / 1e6
        print(
            f"prompt caching: {rest['prompt_tokens'] // max(1, rest['records'])} prompt tokens a"
            f" record; after {warm} warm-up records, {rest['cached_tokens']} of"
            f" {rest['prompt_tokens']} prompt tokens cached; billed ${rest['cost_usd']:.6f},"
            f" ${full:.6f} without the cache"
        )
        ok &= verdict(
            "share of prompt tokens billed as cached >= 0.7", share >= 0.7, f"{share:.3f}"
        )
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300)
    main(parser.parse_args())
