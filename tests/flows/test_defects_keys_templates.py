"""Issue #10, defects 5 and 6: missing and duplicate keys; template errors that stay per
record. Real flows and the real `extract_batch` task against the simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flow_defects_support import run_flow
from flow_support import read_jsonl, sample_tickets, write_jsonl
from prefect import flow

from prefect_openai_chat import ChatModel
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.examples.tickets import SupportTicket
from prefect_openai_chat.results import BatchReport
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.tasks.batch import extract_batch

pytestmark = pytest.mark.filterwarnings('ignore:Field name "schema"')


@flow
def batch_of_texts(chat_model: ChatModel, texts: list[str], prompt: str) -> BatchReport:
    """`extract_batch` over text records, inside a flow as in a pipeline."""
    return extract_batch(chat_model, SupportTicket, texts, prompt=prompt)


# --- 5. missing and duplicate keys --------------------------------------------------------------


def test_a_record_without_its_key_is_keyed_by_its_line(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    tickets = sample_tickets(4, start=80)
    del tickets[1]["ticket_id"]  # line 2
    tickets[3]["ticket_id"] = None  # line 4
    source = write_jsonl(tmp_path / "in.jsonl", tickets)

    summary = run_flow(source, chat_model, tmp_path)

    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["_key"] for r in rows] == [tickets[0]["ticket_id"], "2", tickets[2]["ticket_id"], "4"]
    assert (summary["valid"], summary["missing_keys"], summary["duplicate_keys"]) == (4, 2, 0)


def test_a_repeated_key_is_quarantined_with_the_reason_and_warned_about(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    tickets = sample_tickets(4, start=90)
    repeat = {**tickets[3], "ticket_id": tickets[0]["ticket_id"]}  # line 5: same key as line 1
    source = write_jsonl(tmp_path / "in.jsonl", [*tickets, repeat])

    summary = run_flow(source, chat_model, tmp_path, batch_size=2)

    rows = read_jsonl(tmp_path / "out.jsonl")
    keys = [r["_key"] for r in rows]
    assert keys == [t["ticket_id"] for t in tickets] and len(set(keys)) == len(keys)
    (bad,) = read_jsonl(tmp_path / "bad.jsonl")
    assert (bad["line"], bad["key"], bad["outcome"]) == (5, tickets[0]["ticket_id"], "duplicate")
    assert bad["reason"].startswith(
        f"duplicate key {tickets[0]['ticket_id']!r}: the record on line 1"
    )
    assert bad["record"] == repeat  # nothing lost: the whole record is in quarantine
    assert (summary["records"], summary["valid"], summary["quarantined"]) == (5, 4, 1)
    assert summary["duplicate_keys"] == 1
    assert fresh_sim.stats().requests == 4  # the repeat is not paid for


# --- 6. template errors stay per record ---------------------------------------------------------


def test_records_that_do_not_fit_the_template_are_skipped_one_by_one(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    tickets = sample_tickets(4, start=100)
    records: list[dict[str, Any]] = [
        {**tickets[0], "meta": {"src": "mail"}},
        {**tickets[1], "meta": "mail"},  # {meta[src]} on a string
        {**tickets[2], "meta": {"src": "web"}, "subject": {"nested": True}},  # {subject:.50}
        {**tickets[3], "meta": {"src": ["a"]}},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", records)
    prompt = "From {meta[src]}. Subject: {subject:.50}\n\n{body}"

    summary = run_flow(source, chat_model, tmp_path, prompt=prompt)

    assert (summary["records"], summary["valid"], summary["quarantined"]) == (4, 2, 2)
    assert fresh_sim.stats().requests == 2
    by_line = {q["line"]: q for q in read_jsonl(tmp_path / "bad.jsonl")}
    assert by_line[2]["outcome"] == by_line[3]["outcome"] == "skipped"
    assert "meta is a str" in by_line[2]["reason"] and "{meta[src]}" in by_line[2]["reason"]
    assert "{subject:.50}" in by_line[3]["reason"] and "dict value" in by_line[3]["reason"]


@pytest.mark.parametrize("per_record_tasks", [False, True])
def test_a_format_error_in_per_record_mode_is_skipped_too(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path, per_record_tasks: bool
) -> None:
    tickets = sample_tickets(2, start=110)
    tickets[1]["subject"] = 12  # "{subject:s}" does not take a number
    source = write_jsonl(tmp_path / "in.jsonl", tickets)
    summary = run_flow(
        source,
        chat_model,
        tmp_path,
        prompt="Subject: {subject:s}\n\n{body}",
        per_record_tasks=per_record_tasks,
    )
    assert (summary["valid"], summary["quarantined"]) == (1, 1)
    (bad,) = read_jsonl(tmp_path / "bad.jsonl")
    assert bad["outcome"] == "skipped" and "{subject:s}" in bad["reason"]


def test_text_records_with_a_named_field_are_skipped_not_fatal(
    fresh_sim: Simulator, chat_model: ChatModel
) -> None:
    texts = [t["body"] for t in sample_tickets(2, start=120)]
    report = batch_of_texts(chat_model, texts, "Ticket {name}: {text}")
    assert [o.outcome for o in report.records] == ["skipped", "skipped"]
    assert "can use only {text} for it, not {name}" in (report.records[0].reason or "")
    assert fresh_sim.stats().requests == 0

    fine = batch_of_texts(chat_model, texts, "Ticket: {text}")
    assert fine.valid == 2


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("Ticket {", "malformed"),
        ("Ticket {0}", "positional field {0}"),
        ("Ticket {}", "positional field {}"),
        ("Ticket {text.upper}", "attribute access {text.upper}"),
        ("Ticket {text!x}", "unknown conversion"),
    ],
)
def test_a_template_that_fits_no_record_is_refused_before_any_call(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path, prompt: str, message: str
) -> None:
    from prefect_openai_chat.extraction.templates import PromptTemplateError

    texts = [t["body"] for t in sample_tickets(2, start=120)]
    with pytest.raises(PromptTemplateError, match="prompt template") as raised:
        batch_of_texts(chat_model, texts, prompt)
    assert message in str(raised.value)

    source = write_jsonl(tmp_path / "in.jsonl", [{"text": x} for x in texts])
    with pytest.raises(InvalidInputError, match="prompt template") as refused:
        run_flow(source, chat_model, tmp_path, prompt=prompt)
    assert message in str(refused.value)
    assert fresh_sim.stats().requests == 0


def test_a_repeated_key_is_found_after_the_key_index_moved_to_disk(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `SPILL_AT` keys the index lives in a temporary SQLite file (bounded memory for a
    night of any size); a key repeated from before and from after that point is found."""
    from prefect_openai_chat.flows import key_index

    monkeypatch.setattr(key_index, "SPILL_AT", 3)
    tickets = sample_tickets(6, start=100)
    early = {**tickets[5], "ticket_id": tickets[0]["ticket_id"]}  # line 7: same key as line 1
    late = {**tickets[5], "ticket_id": tickets[4]["ticket_id"]}  # line 8: same key as line 5
    source = write_jsonl(tmp_path / "in.jsonl", [*tickets, early, late])

    summary = run_flow(source, chat_model, tmp_path)

    keys = [r["_key"] for r in read_jsonl(tmp_path / "out.jsonl")]
    assert keys == [t["ticket_id"] for t in tickets]
    bad = read_jsonl(tmp_path / "bad.jsonl")
    assert [(b["line"], b["key"], b["outcome"]) for b in bad] == [
        (7, tickets[0]["ticket_id"], "duplicate"),
        (8, tickets[4]["ticket_id"], "duplicate"),
    ]
    assert "the record on line 1 has the same key" in bad[0]["reason"]
    assert "the record on line 5 has the same key" in bad[1]["reason"]
    assert (summary["valid"], summary["duplicate_keys"]) == (6, 2)
