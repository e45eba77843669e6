"""Issue 24: the Batch API's task runs have names that say what they do, in the UI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from prefect_openai_chat.examples.tickets import sample_tickets_path
from prefect_openai_chat.simulator import Simulator

if TYPE_CHECKING:
    from prefect.events import Event


@pytest.mark.usefixtures("isolated_results")
def test_batch_night_task_runs_are_named_for_what_they_do(
    tmp_path: Path, emitted_events: Callable[[], list[Event]]
) -> None:
    from prefect_openai_chat import ChatModel, ExtractionSpec, OpenAICredentials, RunOptions
    from prefect_openai_chat.flows import extract_records

    source = tmp_path / "tickets.jsonl"
    source.write_text("".join(sample_tickets_path().read_text().splitlines(True)[:4]))
    with Simulator(profile="ideal", seed=2) as sim:
        model = ChatModel(
            credentials=OpenAICredentials(base_url=sim.base_url, api_key=sim.api_key),
            model="gpt-4o-mini-2024-07-18",
        )
        extract_records(
            source=str(source),
            output=str(tmp_path / "rows.jsonl"),
            quarantine=str(tmp_path / "bad.jsonl"),
            spec=ExtractionSpec(
                schema="prefect_openai_chat.examples.tickets:SupportTicket",
                prompt="Subject: {subject}\n\n{body}",
            ),
            chat_model=model,
            run=RunOptions(
                via="batch",
                batch_api={"poll_interval_s": 0.2},
                cache=str(tmp_path / "ledger.sqlite"),
            ),
        )
    final = ("prefect.task-run.Completed", "prefect.task-run.Failed")
    names = {e.resource.name for e in emitted_events() if e.event in final}  # as the UI shows
    assert "collect answers, 1 batches, 4 records" in names
    assert "settle answers, round 1" in names
    assert not [name for name in names if name and name.startswith("batch-api-")]
