"""Helpers shared by the benchmarks: sample records, a ChatModel for a simulator, verdicts.

Not a public module; each benchmark stays one command
(`python benchmarks/<name>.py`).
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gpt-4o-mini-2024-07-18"


def sample_data_module() -> ModuleType:
    """`scripts/make_sample_data.py` as a module (it is a script, not part of the package)."""
    name = "_make_sample_data"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "make_sample_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def tickets(count: int, seed: int = 7) -> list[dict[str, str]]:
    """`count` distinct sample tickets, deterministic for `seed` (the generator's own)."""
    records: list[dict[str, str]] = sample_data_module().generate(count=count, seed=seed)
    return records


def hard_case_ids(count: int) -> dict[str, str]:
    """Ticket id of each deliberately hard case in a data set of `count` tickets."""
    ids: dict[str, str] = sample_data_module().hard_case_ids(count)
    return ids


def chat_model(base_url: str, api_key: str, **fields: Any) -> Any:
    """A `ChatModel` block pointing at a simulator (not saved anywhere)."""
    from prefect_openai_chat import ChatModel, OpenAICredentials
    from prefect_openai_chat.blocks.sections import nest_flat_fields

    return ChatModel(
        credentials=OpenAICredentials(base_url=base_url, api_key=api_key),
        model=MODEL,
        **nest_flat_fields(fields),  # section settings by their flat names too
    )


def median(values: Sequence[float]) -> float:
    """The median of `values`."""
    return float(statistics.median(values))


def rounds(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    """`[1.0, 2.0]` as a short list for the per-round line."""
    return "[" + ", ".join(fmt.format(v) for v in values) + "]"


def verdict(name: str, ok: bool, detail: str) -> bool:
    """Print the one PASS/FAIL line of a benchmark target and return `ok`."""
    print(f"{'PASS' if ok else 'FAIL'}: {name}: {detail}")
    return ok


def peak_rss_kib() -> int:
    """This process's peak resident set size in KiB (VmHWM; Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


CHILD_RESULT = "RESULT "  # how a benchmark's child process marks its figures on stdout


def report_child_night(summary: dict[str, Any], before_kib: int, wall_s: float) -> None:
    """Print, from a child process, the figures of the night it ran (read by `child_figures`)."""
    import json
    import resource

    used = resource.getrusage(resource.RUSAGE_SELF)
    figures = {
        "peak_kib": peak_rss_kib(),
        "before_kib": before_kib,
        "wall_s": wall_s,
        "cpu_s": used.ru_utime + used.ru_stime,  # the whole process, start-up included
        "records": summary["records"],
        "valid": summary["valid"],
        "quarantined": summary["quarantined"],
    }
    print(CHILD_RESULT + json.dumps(figures), flush=True)


def child_figures(command: Sequence[str], what: str, **options: Any) -> dict[str, float]:
    """Run a child night (`command`) and read back what `report_child_night` printed."""
    import json
    import subprocess

    done = subprocess.run(list(command), capture_output=True, text=True, check=False, **options)
    found = [line for line in done.stdout.splitlines() if line.startswith(CHILD_RESULT)]
    if done.returncode != 0 or not found:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-5000:])
        raise SystemExit(f"{what} failed (exit {done.returncode})")
    figures: dict[str, float] = json.loads(found[-1][len(CHILD_RESULT) :])
    return figures


def ticket_spec(instructions: str | None = None) -> Any:
    """The `ExtractionSpec` of the sample tickets (`SupportTicket`, keyed by `ticket_id`),
    with the sample's instructions unless others are given."""
    from prefect_openai_chat import ExtractionSpec
    from prefect_openai_chat.examples.tickets import (
        TICKET_INSTRUCTIONS,
        TICKET_PROMPT,
        SupportTicket,
    )

    return ExtractionSpec(
        schema=SupportTicket,
        prompt=TICKET_PROMPT,
        instructions=TICKET_INSTRUCTIONS if instructions is None else instructions,
        key_field="ticket_id",
    )


async def extract_tickets(
    model: Any, records: list[dict[str, Any]], concurrency: int, cache: Any = False
) -> Any:
    """The sample tickets through the coroutine inside the `aextract_chunk` task.

    The real client, runner, retry tiers and extraction loop; no Prefect task-run
    orchestration around it (that is measured by the flow benchmarks).
    """
    from prefect_openai_chat.tasks import aextract_chunk

    return await aextract_chunk.fn(
        model, ticket_spec(), records, concurrency=concurrency, cache=cache, progress=False
    )
