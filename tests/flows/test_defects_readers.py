"""Issue #21, readers that never lose a line: CSV headers, quotes, big fields and stray
carriage returns; JSONL and iterable records nested too deep, with lone surrogates or
values that are not JSON data. Real flows against the simulator."""

from __future__ import annotations

import csv
import datetime
import decimal
import io
import json
from pathlib import Path
from typing import Any

import pytest
from flow_defects_support import run_flow
from flow_support import read_jsonl, sample_tickets, write_jsonl

from prefect_openai_chat import ChatModel
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.flows import csv_source
from prefect_openai_chat.flows.sources import MAX_DEPTH, count_records, read_records
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.simulator.request_log import read_request_log

pytestmark = pytest.mark.filterwarnings('ignore:Field name "schema"')

HEADER = "ticket_id,subject,body\n"


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "in.csv"
    path.write_bytes(text.encode("utf-8"))
    return path


def _ticket_rows(n: int, start: int = 0) -> str:
    """`n` sample tickets as CSV rows (bodies quoted, with their newlines)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for ticket in sample_tickets(n, start):
        writer.writerow([ticket["ticket_id"], ticket["subject"], ticket["body"]])
    return out.getvalue()


def _quarantined(tmp_path: Path) -> dict[int, dict[str, Any]]:
    return {row["line"]: row for row in read_jsonl(tmp_path / "bad.jsonl")}


# --- 1. a duplicated header name -----------------------------------------------------------------


def test_a_duplicated_csv_header_name_is_refused_before_any_call(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    source = _csv(tmp_path, "ticket_id,body,subject,body\nT-1,first,Login,second\n")

    with pytest.raises(InvalidInputError) as raised:
        run_flow(source, chat_model, tmp_path)

    message = str(raised.value)
    assert "'body'" in message and "columns 2 and 4" in message and "rename" in message
    assert fresh_sim.stats().requests == 0


# --- 2. an unterminated quote ----------------------------------------------------------------------


def test_an_unterminated_quote_quarantines_every_line_it_swallowed(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    source = _csv(
        tmp_path,
        HEADER
        + "T-1,Login,Cannot log in\n"  # line 2: fine
        + 'T-2,Printer,"It is broken\n'  # line 3: the quote is never closed
        + "T-3,Refund,Please refund order ORD-1\n"  # lines 4 and 5 were swallowed by it
        + "T-4,Invoice,Wrong amount\n",
    )

    summary = run_flow(source, chat_model, tmp_path)

    assert count_records(source) == 4  # the count agrees with the reader
    assert (summary["records"], summary["valid"], summary["quarantined"]) == (4, 1, 3)
    bad = _quarantined(tmp_path)
    assert sorted(bad) == [3, 4, 5]
    assert "CSV line 3" in bad[3]["reason"] and "never closed" in bad[3]["reason"]
    assert bad[3]["record"] == 'T-2,Printer,"It is broken'
    for line in (4, 5):
        assert "inside the quoted field that starts on line 3" in bad[line]["reason"]
    assert bad[4]["record"] == "T-3,Refund,Please refund order ORD-1"
    assert fresh_sim.stats().requests == 1  # only T-1 was sent


def test_a_quote_closed_too_late_quarantines_the_lines_in_between(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        HEADER
        + 'T-1,Login,"Cannot log in\n'  # line 2: opens a quote...
        + 'T-2,Printer,"It is broken"\n'  # line 3: ...which this one closes, then "I"
        + "T-3,Refund,Please refund\n",  # line 4: read again
    )
    items = list(read_records(path))

    assert [i.line for i in items] == [2, 3, 4]
    assert items[0].error is not None and "CSV line 2" in items[0].error
    assert "line 3" in items[0].error and "comma" in items[0].error
    assert items[1].error is not None and "starts on line 2" in items[1].error
    assert items[2].record == {"ticket_id": "T-3", "subject": "Refund", "body": "Please refund"}
    assert count_records(path) == 3


def test_quoted_fields_over_several_lines_are_one_record_and_counted_once(tmp_path: Path) -> None:
    path = _csv(tmp_path, HEADER + _ticket_rows(5))
    items = list(read_records(path))

    assert [i.record for i in items] == [
        {k: t[k] for k in ("ticket_id", "subject", "body")} for t in sample_tickets(5)
    ]
    assert count_records(path) == 5
    assert len(path.read_text().splitlines()) > 6  # the bodies do span several lines


def test_a_quoted_field_past_the_size_limit_is_quarantined_in_bounded_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_source, "MAX_CSV_RECORD_CHARS", 100)
    swallowed = "".join(f"T-{n},Printer,still broken\n" for n in range(3, 20))  # lines 3-19
    path = _csv(tmp_path, HEADER + 'T-1,Login,"Cannot log in\n' + swallowed + 'end"\nT-9,a,b\n')

    items = list(read_records(path))

    assert [i.line for i in items] == list(range(2, 22))  # every line once, T-9 on line 21
    assert all(i.error is not None for i in items[:-1])
    assert items[0].error is not None and "past 100 characters" in items[0].error
    assert all("starts on line 2" in (i.error or "") for i in items[1:-1])
    assert items[-1].record == {"ticket_id": "T-9", "subject": "a", "body": "b"}
    assert count_records(path) == 20


def test_a_csv_header_with_an_unclosed_quote_is_refused(tmp_path: Path) -> None:
    path = _csv(tmp_path, 'ticket_id,"body\nT-1,hello\n')
    with pytest.raises(InvalidInputError, match=r"the CSV header: CSV line 1: .* never closed"):
        list(read_records(path))


# --- 3. a field over 128 KiB ---------------------------------------------------------------------


def test_a_csv_field_over_128_kib_is_read(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    thread = "\n".join(f"> On day {n} the printer still did not print." for n in range(4000))
    assert len(thread) > 128 * 1024
    source = _csv(tmp_path, HEADER + _ticket_rows(1) + f'T-BIG,Long thread,"{thread}"\n')
    limit = csv.field_size_limit()

    summary = run_flow(source, chat_model, tmp_path)

    assert (summary["records"], summary["valid"], summary["quarantined"]) == (2, 2, 0)
    records = [i.record for i in read_records(source)]
    assert records[-1] == {"ticket_id": "T-BIG", "subject": "Long thread", "body": thread}
    assert csv.field_size_limit() == limit  # other readers of the process keep theirs


# --- 4. a stray carriage return ------------------------------------------------------------------


def test_a_stray_carriage_return_in_a_csv_field_is_data(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    source = _csv(
        tmp_path,
        HEADER + "T-1,Login,Cannot\rlog in\r\n" + 'T-2,Printer,"It is\rbroken"\r\n',
    )

    summary = run_flow(source, chat_model, tmp_path)

    assert (summary["records"], summary["valid"], summary["quarantined"]) == (2, 2, 0)
    bodies = [i.record["body"] for i in read_records(source) if i.record]
    assert bodies == ["Cannot\rlog in", "It is\rbroken"]


def test_a_csv_header_with_old_mac_line_endings_is_refused(tmp_path: Path) -> None:
    path = _csv(tmp_path, "ticket_id,body\rT-1,hello\rT-2,world\r")
    with pytest.raises(InvalidInputError, match=r"carriage return.*line endings"):
        list(read_records(path))


# --- 5 and 6. JSONL lines nested too deep or holding a lone surrogate ---------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [500, 100_000])
def test_a_jsonl_line_nested_too_deep_is_quarantined(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path, depth: int
) -> None:
    good = sample_tickets(2)
    deep = '{"ticket_id": "T-DEEP", "subject": "s", "body": "b", "meta": ' + _nested(depth) + "}"
    at_limit = {**good[1], "meta": json.loads(_nested(MAX_DEPTH - 1))}  # the record is level 1
    source = write_jsonl(tmp_path / "in.jsonl", [good[0], deep, at_limit])

    summary = run_flow(source, chat_model, tmp_path)

    assert (summary["records"], summary["valid"], summary["quarantined"]) == (3, 2, 1)
    reason = _quarantined(tmp_path)[2]["reason"]
    assert "line 2" in reason and f"deeper than {MAX_DEPTH} levels" in reason


def test_a_jsonl_line_with_a_lone_surrogate_is_quarantined(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    good = sample_tickets(1)
    bad = '{"ticket_id": "T-EMOJI", "subject": "s", "body": "half an emoji: \\ud83d"}'
    source = write_jsonl(tmp_path / "in.jsonl", [bad, good[0]])

    summary = run_flow(source, chat_model, tmp_path)

    assert (summary["records"], summary["valid"], summary["quarantined"]) == (2, 1, 1)
    row = _quarantined(tmp_path)[1]
    assert "line 1" in row["reason"] and "invalid Unicode escape" in row["reason"]
    assert row["record"] == bad  # the line as it is in the file


def test_any_other_error_reading_a_jsonl_line_is_that_lines_reason(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    huge = '{"ticket_id": "T-NUM", "subject": "s", "body": "b", "n": ' + "7" * 5000 + "}"
    source = write_jsonl(tmp_path / "in.jsonl", [sample_tickets(1)[0], huge])

    summary = run_flow(source, chat_model, tmp_path)

    assert (summary["records"], summary["valid"], summary["quarantined"]) == (2, 1, 1)
    reason = _quarantined(tmp_path)[2]["reason"]
    assert reason.startswith("line 2 cannot be read:") and "digits" in reason


# --- 7. an iterable of dicts ----------------------------------------------------------------------


def _deep_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_iterable_items_that_are_not_json_data_are_quarantined(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    good = sample_tickets(2)
    items: list[Any] = [
        good[0],
        {"ticket_id": "T-DEEP", "subject": "s", "body": "b", "meta": _deep_list(500)},
        {"ticket_id": "T-EMOJI", "subject": "s", "body": "half an emoji: \ud83d"},
        {"ticket_id": "T-WHEN", "subject": "s", "body": "b", "at": object()},
        {"ticket_id": "T-KEY", "subject": "s", "body": "b", 7: "int key"},
        {"ticket_id": "T-NAN", "subject": "s", "body": "b", "score": float("nan")},
        good[1],
    ]

    summary = run_flow(items, chat_model, tmp_path)

    assert (summary["records"], summary["valid"], summary["quarantined"]) == (7, 2, 5)
    bad = _quarantined(tmp_path)
    assert sorted(bad) == [2, 3, 4, 5, 6]
    assert "item 2" in bad[2]["reason"] and f"deeper than {MAX_DEPTH}" in bad[2]["reason"]
    assert "item 3" in bad[3]["reason"] and "lone surrogate" in bad[3]["reason"]
    assert "item 4" in bad[4]["reason"] and "object" in bad[4]["reason"]
    assert "['at']" in bad[4]["reason"]
    assert "item 5" in bad[5]["reason"] and "int" in bad[5]["reason"]
    assert "item 6" in bad[6]["reason"] and "nan" in bad[6]["reason"]
    # a set-aside item is shown as JSON text: escapes for the surrogate, repr for the object
    assert "\\ud83d" in bad[3]["record"]
    assert json.loads(bad[4]["record"])["at"].startswith("<object object at")


def test_dates_and_decimals_of_iterable_items_are_sent_as_json_writes_them(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    """A database row or a DataFrame's `to_dict("records")` holds dates and Decimals: the
    records are extracted, their values as pydantic writes them in JSON."""
    items = [
        {**ticket, "opened": datetime.date(2024, 1, 2), "amount": decimal.Decimal("12.50")}
        for ticket in sample_tickets(2)
    ]

    log = tmp_path / "requests.jsonl"
    fresh_sim.configure(request_log=str(log))
    try:
        summary = run_flow(items, chat_model, tmp_path, prompt="{body} on {opened}: {amount}")
    finally:
        fresh_sim.configure(request_log=None)

    assert (summary["records"], summary["valid"], summary["quarantined"]) == (2, 2, 0)
    bodies = [entry["body"] for entry in read_request_log(log)]
    assert len(bodies) == 2 and all("on 2024-01-02: 12.50" in body for body in bodies)
