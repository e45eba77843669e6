"""A night's heap (`flows/heap.py`): what is alive when a night starts stays out of full
garbage collections until the process's last running night ends."""

from __future__ import annotations

import gc
from pathlib import Path

from flow_support import read_jsonl, sample_tickets, write_jsonl
from pydantic import model_validator

from prefect_openai_chat import ChatModel, ExtractionSpec, RunOptions
from prefect_openai_chat.examples.tickets import TICKET_PROMPT, SupportTicket
from prefect_openai_chat.flows import extract_records
from prefect_openai_chat.flows.heap import frozen_heap
from prefect_openai_chat.simulator import Simulator

FROZEN_WHILE_VALIDATING: list[int] = []


class WatchedTicket(SupportTicket):
    """A ticket whose validation notes how many objects the collector has frozen."""

    @model_validator(mode="after")
    def _note_the_heap(self) -> WatchedTicket:
        FROZEN_WHILE_VALIDATING.append(gc.get_freeze_count())
        return self


def test_a_night_freezes_the_heap_it_started_with_until_it_ends(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "tickets.jsonl", sample_tickets(3, start=40))
    FROZEN_WHILE_VALIDATING.clear()
    assert gc.get_freeze_count() == 0
    summary = extract_records(
        source=str(source),
        output=str(tmp_path / "out.jsonl"),
        quarantine=str(tmp_path / "bad.jsonl"),
        spec=ExtractionSpec(schema=WatchedTicket, prompt=TICKET_PROMPT, key_field="ticket_id"),
        chat_model=chat_model,
        run=RunOptions(cache=str(tmp_path / "ledger.sqlite")),
    )
    assert summary["valid"] == 3 and len(read_jsonl(tmp_path / "out.jsonl")) == 3
    assert FROZEN_WHILE_VALIDATING and min(FROZEN_WHILE_VALIDATING) > 0  # during the night
    assert gc.get_freeze_count() == 0  # given back when the night ended


def test_the_heap_stays_frozen_until_the_last_night_of_the_process_ends() -> None:
    first, second = frozen_heap(), frozen_heap()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert gc.get_freeze_count() > 0  # the second night still runs
    second.__exit__(None, None, None)
    assert gc.get_freeze_count() == 0
