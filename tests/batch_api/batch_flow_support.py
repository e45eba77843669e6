"""Helpers of the batch flow tests: run `extract_records` via the Batch API on sample tickets."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from prefect_openai_chat import ChatModel, OpenAICredentials
from prefect_openai_chat.examples.tickets import TICKET_PROMPT, sample_tickets_path
from prefect_openai_chat.flows import extract_records
from prefect_openai_chat.simulator import Simulator

MODEL = "gpt-4o-mini-2024-07-18"
SCHEMA = "prefect_openai_chat.examples.tickets:SupportTicket"


def batch_model(sim: Simulator | Any) -> ChatModel:
    """A ChatModel on `sim` (anything with `base_url` and `api_key`)."""
    credentials = OpenAICredentials(base_url=sim.base_url, api_key=sim.api_key)
    return ChatModel(
        credentials=credentials,
        model=MODEL,
        timeouts={"read_s": 5.0},
    )


def tickets(n: int) -> list[dict[str, Any]]:
    with sample_tickets_path().open(encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(n), handle, strict=False)]


def run_night(
    sim: Simulator | Any, folder: Path, records: list[dict[str, Any]], **options: Any
) -> dict[str, Any]:
    """`extract_records(via="batch")` over `records`; outputs under `folder`."""
    batch_options = {"poll_interval_s": 0.05, **options.pop("batch_options", {})}
    return extract_records(
        source=records,
        schema=SCHEMA,
        chat_model=batch_model(sim),
        prompt=TICKET_PROMPT,
        output=str(folder / "rows.jsonl"),
        quarantine=str(folder / "quarantine.jsonl"),
        key_field="ticket_id",
        via="batch",
        batch_options=batch_options,
        **options,
    )


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def recorded_batches(cache: Path) -> list[str]:
    """The batch ids the runs saved in the SQLite record ledger `cache` hold."""
    if not cache.exists():
        return []
    try:
        with sqlite3.connect(cache, timeout=5) as db:
            states = [row[0] for row in db.execute("SELECT state FROM batch_runs")]
    except sqlite3.OperationalError:  # the table is not there yet
        return []
    rounds = [json.loads(state)["rounds"] for state in states]
    return [entry["batch_id"] for run in rounds for batches in run.values() for entry in batches]
