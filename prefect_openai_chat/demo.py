"""`prefect-openai-chat demo`: the main job, runnable on a fresh machine with no key.

It runs `extract_records` over the shipped sample tickets against the local simulator
(profile `flaky`, so the run shows retries, a re-prompt or two and a quarantined
record). Only when asked, with `real=True` (`--real`: `OPENAI_API_KEY`, and
`OPENAI_BASE_URL` when set) or a saved credentials block (`--credentials-block NAME`),
does it call a real, paid API. Prefect runs on its local ephemeral API, without
telemetry, unless `PREFECT_API_URL` points at a server: then the run is recorded there
(and the demo says so). Records answered before come from the demo's record ledger
(`record-cache.sqlite` in the output folder), for free; `fresh=True` (`--fresh`) starts
a new ledger, so every record is paid for (on the simulator: counted) again.
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
# Set before Prefect starts its ephemeral server: no telemetry heartbeat (on a fresh
# PREFECT_HOME it races the first migrations and prints "database is locked"), and
# time for the server to start on a busy machine.
QUIET_PREFECT = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}
ROWS = (
    ("records", "records"),
    ("valid", "valid"),
    ("repaired", "repaired locally"),
    ("reprompted", "re-prompted"),
    ("quarantined", "quarantined"),
    ("from_cache", "from the ledger (no call, no cost)"),
    ("total_tokens", "tokens (paid for in this run)"),
    ("cost_usd", "cost (USD)"),
    ("retries", "retries"),
    ("http_429s", "429 answers"),
    ("circuit_trips", "circuit trips"),
    ("p50_latency_s", "latency p50 (s)"),
    ("p95_latency_s", "latency p95 (s)"),
    ("wall_time_s", "flow wall time (s)"),
    ("demo_time_s", "demo total, with Prefect start-up (s)"),
)


class DemoError(Exception):
    """A demo option that cannot work; the message says what to do instead."""


def quiet_prefect_environment() -> None:
    """Turn Prefect's telemetry off for this process and the servers it starts."""
    for name, value in QUIET_PREFECT.items():
        os.environ.setdefault(name, value)


def check_profile(profile: str) -> None:
    """Raise `DemoError` listing the profiles when `profile` is not one of them."""
    from prefect_openai_chat.simulator import PROFILES

    if profile not in PROFILES:
        raise DemoError(
            f"unknown simulator profile {profile!r}; choose one of: {', '.join(PROFILES)}"
        )


def output_folder(output: str) -> Path:
    """The demo's output folder, created when missing; `DemoError` when it cannot be."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise DemoError(
            f"--output {output!r} is a file, not a folder; give a folder for the demo's"
            " files (it is created when missing), e.g. --output prefect-openai-chat-demo"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DemoError(
            f"--output {output!r} cannot be created ({exc.strerror or exc}); give a folder"
            " you may write to, e.g. --output prefect-openai-chat-demo"
        ) from exc
    return out


def _client_url(credentials: Any) -> str:
    """Where a client built from these credentials really sends its requests."""
    return str(credentials.get_client().base_url).rstrip("/")


@contextlib.contextmanager
def _endpoint(
    real: bool, profile: str, seed: int, model: str, credentials_block: str | None
) -> Iterator[tuple[Any, str]]:
    """The ChatModel to use and a line saying where the calls go."""
    from prefect_openai_chat.blocks import ChatModel, Circuit, OpenAICredentials, Retries

    if credentials_block:
        try:
            credentials = OpenAICredentials.load(credentials_block)
        except ValueError as exc:
            raise DemoError(
                f"no OpenAICredentials block named {credentials_block!r} on the Prefect API"
                f" ({exc}); save one first, e.g. with `prefect-openai-chat setup`"
            ) from exc
        where = f"{_client_url(credentials)} (credentials block {credentials_block!r})"
        yield ChatModel(credentials=credentials, model=model), where
        return
    if real:
        if not os.environ.get("OPENAI_API_KEY"):
            raise DemoError("--real needs OPENAI_API_KEY; export it, or drop --real")
        credentials = OpenAICredentials()
        where = f"{_client_url(credentials)} (OPENAI_API_KEY from the environment)"
        yield ChatModel(credentials=credentials, model=model), where
        return
    from prefect_openai_chat.simulator import Simulator

    with Simulator(profile=profile, seed=seed) as sim:
        credentials = OpenAICredentials(base_url=sim.base_url, api_key=sim.api_key)
        chat_model = ChatModel(
            credentials=credentials,
            model=model,
            retries=Retries(backoff_base_s=0.1, backoff_cap_s=2.0),
            circuit=Circuit(reset_timeout_s=2.0),
        )
        yield chat_model, f"the local simulator (profile {profile!r}) at {sim.base_url}"


def _sample(records: int, folder: Path) -> Path:
    """The first `records` sample tickets, as a JSONL file in `folder`."""
    path = folder / "input.jsonl"
    with sample_tickets_path().open(encoding="utf-8") as src, path.open("w") as dst:
        for line in itertools.islice(src, records):
            dst.write(line)
    return path


def first_reason(quarantine: str | os.PathLike[str]) -> str | None:
    """The reason of the first quarantined record, to say why nothing was extracted."""
    try:
        with open(quarantine, encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    entry = json.loads(line)
                    return str(entry.get("reason") or entry.get("error") or entry)
    except (OSError, ValueError):
        return None
    return None


LEDGER = "record-cache.sqlite"


def clear_ledger(out: Path) -> None:
    """Remove the demo's record ledger (and SQLite's companion files) in `out`."""
    for name in (LEDGER, f"{LEDGER}-journal", f"{LEDGER}-wal", f"{LEDGER}-shm"):
        (out / name).unlink(missing_ok=True)


def prefect_api() -> str:
    """Where the run is recorded: the server of PREFECT_API_URL, or the ephemeral API."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if url:
        return f"{url} (PREFECT_API_URL: the run is in that server's UI)"
    return "Prefect's local ephemeral API (PREFECT_API_URL is not set)"


def summary_table(summary: dict[str, Any], title: str) -> Any:
    """A rich table of a run's summary: the rows of `ROWS` that the summary has."""
    from rich.table import Table

    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label in ROWS:
        if key in summary:
            value = summary[key]
            table.add_row(label, "-" if value is None else str(value))
    return table


def ledger_note(summary: dict[str, Any], ledger: str, fresh_hint: str) -> str | None:
    """A line saying how many records the ledger answered, and how to start afresh."""
    if not summary.get("from_cache"):
        return None
    return (
        f"ledger:       {summary['from_cache']} of {summary['records']} records came from"
        f" the record ledger {ledger} (answered by an earlier run: no call, no tokens);"
        f" {fresh_hint}"
    )


def _print_summary(summary: dict[str, Any], where: str, out: Path) -> None:
    from rich.console import Console

    console = Console()
    console.print()
    console.print(summary_table(summary, "prefect-openai-chat demo: extract-records"))
    console.print(f"calls went to {where}")
    console.print(f"Prefect API:  {summary.get('prefect_api', prefect_api())}")
    note = ledger_note(
        summary, str(out / LEDGER), "run with --fresh to start a new ledger and call again"
    )
    if note:
        console.print(note)
    console.print(f"valid rows:   {summary['output']}")
    console.print(f"quarantine:   {summary['quarantine']}")
    console.print(f"summary:      {out / 'summary.json'}")


@contextlib.contextmanager
def prefect_session() -> Iterator[None]:
    """Settings for a run from the command line: no telemetry, time for a server to start."""
    quiet_prefect_environment()
    from prefect.settings import (
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    startup = max(90, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
    with temporary_settings(
        updates={
            PREFECT_SERVER_ANALYTICS_ENABLED: False,
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: startup,
        }
    ):
        yield


def run_demo(
    profile: str = "flaky",
    seed: int = 7,
    model: str = DEFAULT_MODEL,
    records: int = 300,
    output: str = "prefect-openai-chat-demo",
    real: bool = False,
    credentials_block: str | None = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """Run the demo flow and print its summary; returns the flow's summary dict.

    `fresh` removes the demo's record ledger first, so no record comes from an earlier run.

    Raises:
        DemoError: for an unknown profile, `real` without a key, or a missing block.
    """
    if not (real or credentials_block):
        check_profile(profile)
    quiet_prefect_environment()
    from prefect_openai_chat.extraction.spec import ExtractionSpec
    from prefect_openai_chat.flows import extract_records
    from prefect_openai_chat.flows.options import RunOptions

    out = output_folder(output)
    if fresh:
        clear_ledger(out)
    source = _sample(records, out)
    started = time.perf_counter()
    with (
        prefect_session(),
        _endpoint(real, profile, seed, model, credentials_block) as (chat_model, where),
    ):
        summary = extract_records(
            source=str(source),
            output=str(out / "tickets.jsonl"),
            quarantine=str(out / "quarantine.jsonl"),
            spec=ExtractionSpec(
                schema=SCHEMA,
                prompt=TICKET_PROMPT,
                instructions=TICKET_INSTRUCTIONS,
                key_field="ticket_id",
            ),
            chat_model=chat_model,
            run=RunOptions(cache=str(out / LEDGER)),
        )
    summary["demo_time_s"] = round(time.perf_counter() - started, 2)
    summary["endpoint"] = where
    summary["prefect_api"] = prefect_api()
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _print_summary(summary, where, out)
    return summary
