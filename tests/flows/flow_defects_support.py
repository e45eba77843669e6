"""Shared by the issue #10 defect tests: one call of the real flow with test defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect_openai_chat import ChatModel
from prefect_openai_chat.examples.tickets import TICKET_PROMPT
from prefect_openai_chat.flows import extract_records

SCHEMA_PATH = "prefect_openai_chat.examples.tickets:SupportTicket"


def run_flow(source: Any, chat_model: ChatModel, tmp_path: Path, **options: Any) -> dict[str, Any]:
    """`extract_records` over `source`, files under `tmp_path` unless given."""
    params: dict[str, Any] = {
        "source": str(source) if isinstance(source, Path) else source,
        "schema": SCHEMA_PATH,
        "chat_model": chat_model,
        "prompt": TICKET_PROMPT,
        "output": str(tmp_path / "out.jsonl"),
        "quarantine": str(tmp_path / "bad.jsonl"),
        "key_field": "ticket_id",
        "cache": str(tmp_path / "cache.sqlite"),
        **options,
    }
    return extract_records(**params)  # type: ignore[no-any-return]
