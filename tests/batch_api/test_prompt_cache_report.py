"""Cached prompt tokens reach each record and the summary, and are billed at the cached rate."""

from __future__ import annotations

from pathlib import Path

import pytest
from batch_flow_support import SCHEMA, batch_model, tickets

from prefect_openai_chat import ExtractionSpec, RunOptions
from prefect_openai_chat.examples.tickets import TICKET_PROMPT
from prefect_openai_chat.flows import extract_records
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.tokens import estimate_cost

pytestmark = pytest.mark.usefixtures("isolated_results")

LONG_INSTRUCTIONS = "Extract the ticket's fields; use null where the text is silent. " * 110


def test_a_long_constant_prefix_is_cached_after_the_first_record(
    batch_sim: Simulator, tmp_path: Path
) -> None:
    summary = extract_records(
        source=tickets(8),
        output=str(tmp_path / "rows.jsonl"),
        quarantine=str(tmp_path / "quarantine.jsonl"),
        spec=ExtractionSpec(
            schema=SCHEMA,
            prompt=TICKET_PROMPT,
            instructions=LONG_INSTRUCTIONS,
        ),
        chat_model=batch_model(batch_sim),
        run=RunOptions(
            concurrency=1,
            chunk_size=8,
        ),
    )
    prompt, cached = summary["prompt_tokens"], summary["cached_tokens"]
    assert prompt > 8 * 1024 and cached == batch_sim.stats().cached_tokens
    assert cached >= 0.6 * prompt and cached % 128 == 0  # all but the first record
    uncached = estimate_cost("gpt-4o-mini", prompt, summary["completion_tokens"])
    cheaper = estimate_cost("gpt-4o-mini", prompt, summary["completion_tokens"], cached)
    assert summary["cost_usd"] == pytest.approx(cheaper, rel=1e-3) and cheaper < uncached
