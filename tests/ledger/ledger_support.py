"""What the ledger tests run in other processes (spawned: importable, picklable arguments)."""

from __future__ import annotations

import os
import traceback
from typing import Any

SPAWN_TIMEOUT_S = 120  # a spawned interpreter imports Prefect; slow on a loaded machine


def race_for_keys(cache: str, keys: list[str], chunk: int, barrier: Any, results: Any) -> None:
    """Claim `keys` in chunks of `chunk` as fast as possible once every racer is ready.

    Each key granted is completed with this racer's owner name; the keys granted go
    back through `results`.
    """
    try:
        from prefect_openai_chat.extraction.ledger import new_owner, open_ledger

        ledger = open_ledger(cache)
        assert ledger is not None
        owner = new_owner()
        barrier.wait(SPAWN_TIMEOUT_S)
        granted: list[str] = []
        for start in range(0, len(keys), chunk):
            got = ledger.claim_many(keys[start : start + chunk], owner, lease_s=60)
            granted += sorted(got)
            for key in got:
                ledger.complete(key, f'{{"owner": "{owner}"}}')
        ledger.close()
        results.put((owner, granted))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def claim_and_die(cache: str, keys: list[str], lease_s: float, claimed: Any) -> None:
    """Claim `keys` with a short lease, say so, and die without releasing them."""
    from prefect_openai_chat.extraction.ledger import new_owner, open_ledger

    ledger = open_ledger(cache)
    assert ledger is not None
    assert ledger.claim_many(keys, new_owner(), lease_s) == set(keys)
    claimed.set()
    os._exit(3)  # no release, no close: as a killed worker


def extract_in_child(env: dict[str, str], job: dict[str, Any], barrier: Any, results: Any) -> None:
    """Run `extract_records` over `job` against the parent's Prefect API and simulator."""
    try:
        os.environ.update(env)
        from model_support import fast_model
        from prefect import flow

        from prefect_openai_chat import ExtractionSpec, RunOptions
        from prefect_openai_chat.examples.tickets import TICKET_PROMPT, SupportTicket
        from prefect_openai_chat.flows import extract_records

        chat_model = fast_model(job["base_url"], job["api_key"])
        flow(name="warm-up")(lambda: None)()  # a process's first flow run is slow to start
        barrier.wait(SPAWN_TIMEOUT_S)  # both start their runs together
        summary = extract_records(
            source=job["source"],
            output=job["output"],
            quarantine=job["quarantine"],
            spec=ExtractionSpec(
                schema=SupportTicket,
                prompt=TICKET_PROMPT,
                key_field="ticket_id",
            ),
            chat_model=chat_model,
            run=RunOptions(
                chunk_size=job["batch_size"],
                concurrency=job["concurrency"],
                cache=job["cache"],
            ),
        )
        results.put(summary)
    except BaseException:
        results.put({"error": traceback.format_exc()})
