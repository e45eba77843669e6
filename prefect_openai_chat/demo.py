"""`prefect-openai-chat demo`: the main job, runnable on a fresh machine with no key.

It runs `extract_records` over the shipped sample tickets. Without an API key (or
with `--simulate`) it calls the local simulator (profile `flaky`, so the run shows
retries, a re-prompt or two and a quarantined record); with `OPENAI_API_KEY` set,
or `--credentials-block NAME`, it calls the real API. Prefect runs on its local
ephemeral API unless `PREFECT_API_URL` points at a server.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect_openai_chat.examples.tickets import (
    TICKET_INSTRUCTIONS,
    TICKET_PROMPT,
    sample_tickets_path,
)

SCHEMA = "prefect_openai_chat.examples.tickets:SupportTicket"
DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"
ROWS = (
    ("records", "records"),
    ("valid", "valid"),
    ("repaired", "repaired locally"),
    ("reprompted", "re-prompted"),
    ("quarantined", "quarantined"),
    ("from_cache", "from cache"),
    ("total_tokens", "tokens"),
    ("cost_usd", "cost (USD)"),
    ("retries", "retries"),
    ("circuit_trips", "circuit trips"),
    ("p50_latency_s", "latency p50 (s)"),
    ("p95_latency_s", "latency p95 (s)"),
    ("wall_time_s", "wall time (s)"),
)


@contextlib.contextmanager
def _endpoint(
    simulate: bool, profile: str, seed: int, model: str, credentials_block: str | None
) -> Iterator[tuple[Any, str]]:
    """The ChatModel to use and a line saying where the calls go."""
    from prefect_openai_chat.blocks import ChatModel, OpenAICredentials

    if simulate:
        from prefect_openai_chat.simulator import Simulator

        with Simulator(profile=profile, seed=seed) as sim:
            credentials = OpenAICredentials(base_url=sim.base_url, api_key=sim.api_key)
            chat_model = ChatModel(
                credentials=credentials,
                model=model,
                backoff_base_s=0.1,
                backoff_cap_s=2.0,
                circuit_reset_timeout_s=2.0,
            )
            yield chat_model, f"the local simulator (profile {profile!r}) at {sim.base_url}"
        return
    if credentials_block:
        credentials = OpenAICredentials.load(credentials_block)  # type: ignore[assignment]
        where = f"the API behind the credentials block {credentials_block!r}"
    else:
        credentials = OpenAICredentials()
        where = "the OpenAI API (OPENAI_API_KEY)"
    yield ChatModel(credentials=credentials, model=model), where


def _sample(records: int, folder: Path) -> Path:
    """The first `records` sample tickets, as a JSONL file in `folder`."""
    path = folder / "input.jsonl"
    with sample_tickets_path().open(encoding="utf-8") as src, path.open("w") as dst:
        for line in itertools.islice(src, records):
            dst.write(line)
    return path


def _print_summary(summary: dict[str, Any], where: str, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="prefect-openai-chat demo: extract-records", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label in ROWS:
        value = summary.get(key)
        table.add_row(label, "-" if value is None else str(value))
    console = Console()
    console.print()
    console.print(table)
    console.print(f"calls went to {where}")
    console.print(f"valid rows:   {summary['output']}")
    console.print(f"quarantine:   {summary['quarantine']}")
    console.print(f"summary:      {out / 'summary.json'}")


def run_demo(
    profile: str = "flaky",
    seed: int = 7,
    model: str = DEFAULT_MODEL,
    records: int = 300,
    output: str = "prefect-openai-chat-demo",
    simulate: bool | None = None,
    credentials_block: str | None = None,
) -> dict[str, Any]:
    """Run the demo flow and print its summary; returns the flow's summary dict."""
    from prefect_openai_chat.flows import extract_records

    if simulate is None:
        simulate = not (os.environ.get("OPENAI_API_KEY") or credentials_block)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    source = _sample(records, out)
    started = time.perf_counter()
    with _endpoint(simulate, profile, seed, model, credentials_block) as (chat_model, where):
        summary = extract_records(
            source=str(source),
            schema=SCHEMA,
            chat_model=chat_model,
            prompt=TICKET_PROMPT,
            instructions=TICKET_INSTRUCTIONS,
            output=str(out / "tickets.jsonl"),
            quarantine=str(out / "quarantine.jsonl"),
            key_field="ticket_id",
            cache=str(out / "record-cache.sqlite"),
        )
    summary["wall_time_s"] = round(time.perf_counter() - started, 2)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _print_summary(summary, where, out)
    return summary
