"""Helpers shared by the flow tests: chat models on the simulator, sample tickets, JSONL."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from prefect_openai_chat import ChatModel, OpenAICredentials
from prefect_openai_chat.blocks.sections import nest_flat_fields
from prefect_openai_chat.examples.tickets import sample_tickets_path
from prefect_openai_chat.simulator import Simulator

MODEL = "gpt-4o-mini-2024-07-18"


def make_model(sim: Simulator, **settings: Any) -> ChatModel:
    """A ChatModel on `sim`; `fault=` goes out as `x-simulator-fault` on every request."""
    fault = settings.pop("fault", None)
    credentials = OpenAICredentials(
        base_url=sim.base_url,
        api_key=sim.api_key,
        default_headers={"x-simulator-fault": fault} if fault else None,
    )
    options: dict[str, Any] = {"read_timeout_s": 5.0, **settings}
    return ChatModel(credentials=credentials, model=MODEL, **nest_flat_fields(options))


def sample_tickets(n: int, start: int = 0) -> list[dict[str, Any]]:
    """`n` tickets of the sample data set, from line `start` (0-based)."""
    with sample_tickets_path().open(encoding="utf-8") as handle:
        return [json.loads(line) for line in itertools.islice(handle, start, start + n)]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Rows as JSONL; a `str` row is written as it is (for malformed lines)."""
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
