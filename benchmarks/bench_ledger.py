"""What the record ledger costs, and what it saves when two workers share an input.

In one run, against one simulator (`ideal`, latency 0, in its own process: the
ledger's cost is as visible as it can be), the same sample tickets go through
`aextract_chunk.fn` (the coroutine inside the `extract_chunk` task), at concurrency 16:

* cost: records per second with a fresh ledger (a SQLite file; a PostgreSQL schema),
  where every record is looked up, claimed and completed, next to the same batch with
  `cache=False`; alternating rounds, medians. Target: >= 0.8 of the figure without.
* saving: two batches over the same records started together (two workers: separate
  connections and owners) on one PostgreSQL ledger, next to the same two without a
  ledger: requests the simulator received. Target: half as many with the ledger (each
  record's requests, re-asks included, sent by one worker only).

PostgreSQL at POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test); the
PostgreSQL figures are left out, with a note, when it does not answer.

Run: python benchmarks/bench_ledger.py [--records 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from _common import chat_model, extract_tickets, median, rounds, tickets, verdict

from prefect_openai_chat.simulator import Simulator

TARGET = 0.80
CONCURRENCY = 16
POSTGRES_URL = os.environ.get("POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_schema() -> tuple[str, str] | None:
    """A fresh schema and a ledger URL using it, or None when PostgreSQL does not answer."""
    try:
        import psycopg

        schema = f"bench_ledger_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as db:
            db.execute(f"CREATE SCHEMA {schema}")
    except Exception as exc:
        print(f"note: PostgreSQL at {POSTGRES_URL} does not answer ({exc}); its figures left out")
        return None
    option = quote(f"-csearch_path={schema}", safe="")
    return schema, f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}options={option}"


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as db:
        db.execute(f"DROP SCHEMA {schema} CASCADE")


def fresh_postgres_table(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS prefect_openai_chat_ledger")


async def timed(model: Any, records: list[dict[str, Any]], cache: Any) -> float:
    start = time.perf_counter()
    report = await extract_tickets(model, records, CONCURRENCY, cache=cache)
    assert not any(o.cached for o in report.records)  # every record paid in this round
    return len(records) / (time.perf_counter() - start)


async def run(args: argparse.Namespace) -> int:
    records = tickets(args.records, seed=args.seed)
    work = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    postgres = postgres_schema()
    ok = True
    try:
        async with Simulator(profile="ideal", seed=args.seed, subprocess=True) as sim:
            model = chat_model(sim.base_url, sim.api_key)
            await extract_tickets(model, records[:200], CONCURRENCY, cache=False)  # warm up
            names = ["none", "sqlite"] + (["postgres"] if postgres else [])
            figures: dict[str, list[float]] = {name: [] for name in names}
            for rnd in range(args.rounds):
                for name in names if rnd % 2 == 0 else list(reversed(names)):
                    if name == "none":
                        cache: Any = False
                    elif name == "sqlite":
                        cache = str(work / f"ledger-{rnd}.sqlite")
                    else:
                        assert postgres is not None
                        fresh_postgres_table(postgres[1])
                        cache = postgres[1]
                    figures[name].append(await timed(model, records, cache))
            base = median(figures["none"])
            print(
                f"{args.records} records, ideal, latency 0, concurrency {CONCURRENCY},"
                f" {args.rounds} rounds (records/s per round)"
            )
            print(f"  no ledger (cache=False): {base:.1f} records/s {rounds(figures['none'])}")
            for name in names[1:]:
                value = median(figures[name])
                print(
                    f"  {name} ledger: {value:.1f} records/s {rounds(figures[name])};"
                    f" ratio {value / base:.3f}"
                )
                ok &= verdict(
                    f"{name} ledger throughput", value / base >= TARGET, f">= {TARGET} of none"
                )

            if postgres:
                fresh_postgres_table(postgres[1])
                sent_by: dict[str, int] = {}
                for cache in (False, postgres[1]):
                    sim.reset()
                    start = time.perf_counter()
                    await asyncio.gather(
                        extract_tickets(model, records, CONCURRENCY, cache=cache),
                        extract_tickets(model, records, CONCURRENCY, cache=cache),
                    )
                    wall = time.perf_counter() - start
                    sent = sim.stats().requests
                    label = "shared PostgreSQL ledger" if cache else "no ledger"
                    sent_by[label] = sent
                    print(
                        f"  two workers over the same {args.records} records, {label}:"
                        f" {sent} requests, {wall:.2f} s"
                    )
                shared, alone = sent_by["shared PostgreSQL ledger"], sent_by["no ledger"]
                print(f"  requests, shared ledger / no ledger: ratio {shared / alone:.3f}")
                ok &= verdict(  # re-asks included: each worker alone sends the same requests
                    "two workers, one ledger", 2 * shared == alone, f"2 x {shared} == {alone}"
                )
    finally:
        if postgres:
            drop_schema(postgres[0])
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logging.getLogger("prefect").setLevel(logging.WARNING)
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
