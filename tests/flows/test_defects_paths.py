"""Issue #10, defects 1, 2 and 7: paths that overwrite the source, generator and empty sources,
bytes that are not UTF-8. Real flows against the simulator."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flow_defects_support import run_flow
from flow_support import read_jsonl, sample_tickets, write_jsonl

from prefect_openai_chat import ChatModel
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.simulator import Simulator

pytestmark = pytest.mark.filterwarnings('ignore:Field name "schema"')

# --- 1. output or quarantine on the source ------------------------------------------------------

SPELLINGS = ["same", "relative", "dot-slash", "dot-dot", "symlink", "hard link"]


def _spelling(tmp_path: Path, source: Path, how: str) -> str:
    if how == "same":
        return str(source)
    if how == "relative":
        return source.name
    if how == "dot-slash":
        return f"./{source.name}"
    if how == "dot-dot":
        (tmp_path / "sub").mkdir()
        return f"sub/../{source.name}"
    link = tmp_path / "link.jsonl"
    if how == "symlink":
        link.symlink_to(source)
    else:
        os.link(source, link)
    return str(link)


@pytest.mark.parametrize("role", ["output", "quarantine"])
@pytest.mark.parametrize("how", SPELLINGS)
def test_a_path_that_is_the_source_is_refused(
    fresh_sim: Simulator,
    chat_model: ChatModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    role: str,
    how: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    source = write_jsonl(tmp_path / "tickets.jsonl", sample_tickets(3))
    before = source.read_bytes()
    target = _spelling(tmp_path, source, how)

    with pytest.raises(InvalidInputError) as raised:
        run_flow(source, chat_model, tmp_path, **{role: target})

    message = str(raised.value)
    assert f"source and {role} must be different files" in message
    assert "would overwrite its source" in message
    assert source.read_bytes() == before  # the input is untouched
    assert fresh_sim.stats().requests == 0


def test_the_cache_on_the_output_is_refused(chat_model: ChatModel, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "tickets.jsonl", sample_tickets(1))
    with pytest.raises(InvalidInputError, match="output and cache must be different files"):
        run_flow(
            source, chat_model, tmp_path, output=str(tmp_path / "c.db"), cache=f"{tmp_path}/./c.db"
        )


# --- 2. a generator as source -------------------------------------------------------------------


def test_a_generator_source_is_processed_not_dropped(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    tickets = sample_tickets(5, start=40)

    def generate() -> Iterator[dict[str, Any]]:
        yield from tickets

    summary = run_flow(generate(), chat_model, tmp_path)

    assert (summary["records"], summary["valid"], summary["quarantined"]) == (5, 5, 0)
    assert fresh_sim.stats().requests == 5
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["_key"] for r in rows] == [t["ticket_id"] for t in tickets]


def test_a_generator_source_works_after_with_options(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    from prefect_openai_chat.flows import extract_records

    renamed = extract_records.with_options(name="extract-records-renamed")
    summary = renamed(
        source=(t for t in sample_tickets(2, start=45)),
        schema="prefect_openai_chat.examples.tickets:SupportTicket",
        chat_model=chat_model,
        prompt="Subject: {subject}\n\n{body}",
        output=str(tmp_path / "out.jsonl"),
        quarantine=str(tmp_path / "bad.jsonl"),
        cache=str(tmp_path / "cache.sqlite"),
    )
    assert summary["records"] == summary["valid"] == 2


def test_an_item_that_is_not_a_dict_is_quarantined_not_fatal(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    tickets = sample_tickets(2, start=50)
    source = (x for x in [tickets[0], "not a dict", tickets[1]])

    summary = run_flow(source, chat_model, tmp_path)

    assert (summary["records"], summary["valid"], summary["quarantined"]) == (3, 2, 1)
    (bad,) = read_jsonl(tmp_path / "bad.jsonl")
    assert (bad["line"], bad["reason"]) == (2, "item 2 is a str, not a dict")


# --- 7. an empty source, bytes that are not UTF-8 -----------------------------------------------


@pytest.mark.parametrize("kind", ["empty jsonl", "blank jsonl", "header-only csv", "empty list"])
def test_an_empty_source_finishes_with_zero_records(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path, kind: str
) -> None:
    source: Any
    if kind == "empty list":
        source = []
    else:
        name = "in.csv" if "csv" in kind else "in.jsonl"
        source = tmp_path / name
        source.write_text(
            {
                "empty jsonl": "",
                "blank jsonl": "\n \n",
                "header-only csv": "ticket_id,subject,body\n",
            }[kind]
        )
    out, bad = tmp_path / "out.jsonl", tmp_path / "bad.jsonl"
    out.write_text('{"_key": "yesterday"}\n')

    summary = run_flow(source, chat_model, tmp_path)

    assert (summary["records"], summary["valid"], summary["quarantined"]) == (0, 0, 0)
    assert out.read_text() == "" and bad.read_text() == ""  # this run's (empty) result
    assert fresh_sim.stats().requests == 0


def test_a_source_with_no_readable_record_quarantines_every_line(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", ["{broken", "[1, 2]"])
    summary = run_flow(source, chat_model, tmp_path)
    assert (summary["records"], summary["quarantined"]) == (2, 2)
    assert [q["line"] for q in read_jsonl(tmp_path / "bad.jsonl")] == [1, 2]


def test_a_jsonl_line_that_is_not_utf8_is_quarantined_with_its_offset(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    tickets = sample_tickets(3, start=60)
    good = [(t["ticket_id"], t) for t in tickets]
    lines = [
        write_jsonl(tmp_path / "a.jsonl", [tickets[0]]).read_bytes(),
        b'{"ticket_id": "T-LATIN1", "subject": "Caf\xe9", "body": "Cr\xe8me br\xfbl\xe9e"}\n',
        write_jsonl(tmp_path / "b.jsonl", tickets[1:]).read_bytes(),
    ]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(lines))
    offset = len(lines[0]) + lines[1].index(b"\xe9")

    summary = run_flow(source, chat_model, tmp_path)

    assert (summary["records"], summary["valid"], summary["quarantined"]) == (4, 3, 1)
    assert fresh_sim.stats().requests == 3  # nothing replaced with U+FFFD is sent
    (bad,) = read_jsonl(tmp_path / "bad.jsonl")
    assert bad["line"] == 2 and bad["outcome"] == "unreadable"
    assert bad["reason"].startswith("line 2 is not valid UTF-8: byte 0xe9")
    assert f"at byte offset {offset} of the file" in bad["reason"]
    assert "\\xe9" in bad["record"]  # the bytes, shown, not replaced
    assert [r["_key"] for r in read_jsonl(tmp_path / "out.jsonl")] == [k for k, _ in good]


def test_a_csv_row_that_is_not_utf8_is_quarantined(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    tickets = sample_tickets(2, start=70)
    path = tmp_path / "in.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ticket_id", "subject", "body"])
        writer.writerow([tickets[0]["ticket_id"], tickets[0]["subject"], tickets[0]["body"]])
    with path.open("ab") as handle:
        handle.write(b'T-LATIN1,Caf\xe9,"two\nlines"\n')
    with path.open("a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerow(
            [tickets[1]["ticket_id"], tickets[1]["subject"], tickets[1]["body"]]
        )
    bad_line = path.read_bytes()[: path.read_bytes().index(b"T-LATIN1")].count(b"\n") + 1

    summary = run_flow(path, chat_model, tmp_path)

    assert (summary["records"], summary["valid"], summary["quarantined"]) == (3, 2, 1)
    (bad,) = read_jsonl(tmp_path / "bad.jsonl")
    assert bad["reason"].startswith(f"line {bad_line} is not valid UTF-8: byte 0xe9")
    assert bad["line"] == bad_line  # a CSV row is at the line it starts on (issue 24)
    assert bad["key"] == "2"  # keyed by its record number: ticket_id is not readable
    assert fresh_sim.stats().requests == 2
