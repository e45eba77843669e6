"""The extract_records flow end to end: exactly once, idempotent re-runs, outputs, artifacts.

Every run goes through the real Prefect flow, the real `openai` client and the
simulator over HTTP, with a record cache under the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sqlite3
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pyarrow.parquet as pq
import pytest
from flow_support import make_model, read_jsonl, sample_tickets, write_jsonl
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterId,
    ArtifactFilterKey,
)
from prefect.client.schemas.objects import Artifact
from pydantic import BaseModel

from prefect_openai_chat import ChatModel, ExtractionSpec, RunOptions
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.examples.tickets import TICKET_PROMPT, SupportTicket
from prefect_openai_chat.flows import extract_records
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.simulator.settings import OutageWindow

SCHEMA_PATH = "prefect_openai_chat.examples.tickets:SupportTicket"

# Prefect builds a pydantic model of the flow's parameters; `schema` shadows an attribute.
pytestmark = pytest.mark.filterwarnings('ignore:Field name "schema"')


class ShortTicket(BaseModel):
    """A narrower schema: changing the schema must re-do every record."""

    customer_name: str
    email: str


def run(
    source: Any,
    chat_model: ChatModel,
    out: Path,
    bad: Path,
    cache: Path,
    **kw: Any,
) -> dict[str, Any]:
    options: dict[str, Any] = {"prompt": TICKET_PROMPT, "key_field": "ticket_id", **kw}
    return extract_records(  # type: ignore[no-any-return]
        source=str(source) if isinstance(source, Path) else source,
        schema=options.pop("schema", SCHEMA_PATH),
        chat_model=chat_model,
        output=str(out),
        quarantine=str(bad),
        cache=str(cache),
        **options,
    )


def keys_of(rows: list[dict[str, Any]], field: str) -> list[str]:
    return [str(row[field]) for row in rows]


async def artifacts_of(flow_run_id: UUID) -> dict[str, Artifact]:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                key=ArtifactFilterKey(like_="extract-records-"),
            )
        )
    return {a.key: a for a in found if a.key}


def table_rows(artifact: Artifact) -> list[dict[str, Any]]:
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data  # type: ignore[return-value]


# --- exactly once, re-runs, artifacts ----------------------------------------------------------


def test_exactly_once_rerun_and_artifacts(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    records: list[Any] = sample_tickets(23)
    records.insert(7, '{"ticket_id": "T-BROKEN", "subject": ')  # malformed JSON, line 8
    records.insert(12, {"ticket_id": "T-NOBODY", "subject": "no body"})  # line 13
    source = write_jsonl(tmp_path / "tickets.jsonl", records)
    out, bad, cache = tmp_path / "out.jsonl", tmp_path / "bad.jsonl", tmp_path / "cache.sqlite"

    state = extract_records(
        source=str(source),
        output=str(out),
        quarantine=str(bad),
        spec=ExtractionSpec(
            schema=SCHEMA_PATH,
            prompt=TICKET_PROMPT,
            key_field="ticket_id",
        ),
        chat_model=chat_model,
        return_state=True,
        run=RunOptions(
            chunk_size=10,
            cache=str(cache),
        ),
    )
    summary = state.result()

    rows, quarantined = read_jsonl(out), read_jsonl(bad)
    assert summary["records"] == 25 == len(rows) + len(quarantined)
    assert summary["valid"] == len(rows) == 23
    assert summary["quarantined"] == len(quarantined) == 2
    assert fresh_sim.stats().requests == 23
    assert summary["prompt_tokens"] == fresh_sim.stats().prompt_tokens
    assert summary["completion_tokens"] == fresh_sim.stats().completion_tokens
    assert summary["from_cache"] == 0 and summary["cost_usd"] > 0
    assert summary["p50_latency_s"] is not None and summary["p95_latency_s"] is not None

    # every key exactly once across both files
    all_keys = keys_of(rows, "_key") + keys_of(quarantined, "key")
    expected = [r["ticket_id"] for r in records if isinstance(r, dict)] + ["8"]
    assert sorted(all_keys) == sorted(expected)
    assert len(set(all_keys)) == len(all_keys)
    for row in rows:
        SupportTicket.model_validate({k: v for k, v in row.items() if k != "_key"})
    by_line = {q["line"]: q for q in quarantined}
    assert (
        by_line[8]["outcome"] == "unreadable" and "malformed JSON on line 8" in by_line[8]["reason"]
    )
    assert by_line[8]["record"] == records[7]
    assert by_line[13]["outcome"] == "skipped" and "'body'" in by_line[13]["reason"]
    assert by_line[13]["record"] == records[12]

    # the artifacts of this run
    found = asyncio.run(artifacts_of(state.state_details.flow_run_id))
    assert set(found) == {
        "extract-records-progress",
        "extract-records-summary",
        "extract-records-quarantine",
    }
    assert found["extract-records-progress"].data == 100.0
    metrics = {r["metric"]: r["value"] for r in table_rows(found["extract-records-summary"])}
    assert (metrics["records"], metrics["valid"], metrics["quarantined"]) == ("25", "23", "2")
    assert metrics["total_tokens"] == str(summary["total_tokens"])
    assert metrics["circuit_trips"] == "0"
    table = table_rows(found["extract-records-quarantine"])
    assert sorted((r["line"], r["key"]) for r in table) == [(8, "8"), (13, "T-NOBODY")]
    assert all(r["reason"] for r in table)

    # a re-run after completion pays for nothing and writes the same files
    first_rows = out.read_text()
    fresh_sim.reset()
    again = run(source, chat_model, out, bad, cache, batch_size=10)
    assert fresh_sim.stats().requests == 0
    assert again["records"] == 25 and again["valid"] == 23 and again["quarantined"] == 2
    assert again["from_cache"] == 23 and again["total_tokens"] == 0
    assert out.read_text() == first_rows
    assert len(read_jsonl(bad)) == 2


def test_rerun_after_partial_failure_pays_only_for_the_failed(
    fresh_sim: Simulator, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "tickets.jsonl", sample_tickets(12, start=30))
    out, bad, cache = tmp_path / "out.jsonl", tmp_path / "bad.jsonl", tmp_path / "cache.sqlite"
    # one attempt per call and no task tier: the outage's 503s end as per-record failures
    chat_model = make_model(fresh_sim, max_attempts=1, task_retries=0, circuit_failures=100)
    fresh_sim.configure(outages=[OutageWindow(from_request=3, to_request=7)])

    first = run(source, chat_model, out, bad, cache, concurrency=1)
    assert (first["records"], first["valid"], first["quarantined"]) == (12, 8, 4)
    quarantined = read_jsonl(bad)
    assert [q["line"] for q in quarantined] == [4, 5, 6, 7]
    assert all(q["outcome"] == "error" and "503" in q["reason"] for q in quarantined)
    assert all(q["attempts"] == 1 for q in quarantined)
    assert len(read_jsonl(out)) == 8

    fresh_sim.configure(outages=[])
    fresh_sim.reset()
    second = run(source, chat_model, out, bad, cache, concurrency=1)
    assert fresh_sim.stats().requests == 4  # only the records that failed
    assert (second["valid"], second["quarantined"], second["from_cache"]) == (12, 0, 8)
    assert read_jsonl(bad) == []
    rows = read_jsonl(out)
    assert keys_of(rows, "_key") == [f"T-{n:05d}" for n in range(31, 43)]


def test_changed_prompt_or_schema_redoes_everything(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "tickets.jsonl", sample_tickets(6, start=60))
    out, bad, cache = tmp_path / "out.jsonl", tmp_path / "bad.jsonl", tmp_path / "cache.sqlite"
    run(source, chat_model, out, bad, cache)
    assert fresh_sim.stats().requests == 6

    fresh_sim.reset()
    run(source, chat_model, out, bad, cache, prompt="Ticket {ticket_id}: {subject}\n\n{body}")
    assert fresh_sim.stats().requests == 6

    fresh_sim.reset()
    summary = run(source, chat_model, out, bad, cache, schema=ShortTicket)
    assert fresh_sim.stats().requests == 6 and summary["valid"] == 6
    assert set(read_jsonl(out)[0]) == {"_key", "customer_name", "email"}

    fresh_sim.reset()
    run(source, chat_model, out, bad, cache, schema=ShortTicket)
    assert fresh_sim.stats().requests == 0


def test_keys_are_line_numbers_without_a_key_field_across_batches(
    fresh_sim: Simulator, tmp_path: Path
) -> None:
    records = sample_tickets(7, start=80)
    for index in (1, 5):  # one failure in each of the first two batches
        del records[index]["body"]
    source = write_jsonl(tmp_path / "tickets.jsonl", records)
    out, bad = tmp_path / "out.jsonl", tmp_path / "bad.jsonl"
    summary = run(
        source, make_model(fresh_sim), out, bad, tmp_path / "c.sqlite", key_field=None, batch_size=3
    )

    assert (summary["valid"], summary["quarantined"]) == (5, 2)
    all_keys = keys_of(read_jsonl(out), "_key") + keys_of(read_jsonl(bad), "key")
    assert sorted(all_keys, key=int) == [str(n) for n in range(1, 8)]
    assert [q["line"] for q in read_jsonl(bad)] == [2, 6]


def test_sloppy_json_run_counts_repairs_and_reprompts(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "tickets.jsonl", sample_tickets(40, start=160))
    out, bad = tmp_path / "out.jsonl", tmp_path / "bad.jsonl"
    with Simulator(profile="sloppy-json", seed=3) as sloppy:
        chat_model = make_model(sloppy, max_completion_tokens=400)
        summary = run(source, chat_model, out, bad, tmp_path / "c.sqlite", concurrency=1)
        stats = sloppy.stats()

    assert summary["records"] == 40 == summary["valid"] + summary["quarantined"]
    assert summary["valid"] >= 39
    assert len(read_jsonl(out)) == summary["valid"]
    assert len(read_jsonl(bad)) == summary["quarantined"]
    assert summary["repaired"] > 0 and summary["reprompted"] > 0
    assert summary["reprompted"] <= stats.reprompts
    assert summary["prompt_tokens"] == stats.prompt_tokens
    assert summary["completion_tokens"] == stats.completion_tokens


# --- outputs --------------------------------------------------------------------------------


def test_parquet_and_sqlite_outputs_have_the_rows(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "tickets.jsonl", sample_tickets(9, start=120))
    cache = tmp_path / "cache.sqlite"
    reference = run(source, chat_model, tmp_path / "rows.jsonl", tmp_path / "q1.jsonl", cache)
    assert reference["valid"] == 9
    expected = {row["_key"]: row for row in read_jsonl(tmp_path / "rows.jsonl")}

    fresh_sim.reset()
    parquet = tmp_path / "out" / "rows.parquet"
    summary = run(source, chat_model, parquet, tmp_path / "q2.jsonl", cache)
    assert summary["valid"] == 9 and fresh_sim.stats().requests == 0  # served from the cache
    table = pq.read_table(parquet)
    assert table.num_rows == 9
    assert table.column_names == ["_key", *SupportTicket.model_fields]
    assert str(table.schema.field("amount").type) == "double"
    assert str(table.schema.field("category").type) == "string"
    for row in table.to_pylist():
        assert row == {k: expected[row["_key"]].get(k) for k in row}

    sqlite_path = tmp_path / "out" / "rows.sqlite"
    run(source, chat_model, sqlite_path, tmp_path / "q3.jsonl", cache)
    with sqlite3.connect(sqlite_path) as db:
        db.row_factory = sqlite3.Row
        sql_rows = [dict(r) for r in db.execute("SELECT * FROM records ORDER BY _key")]
    assert len(sql_rows) == 9
    assert list(sql_rows[0]) == ["_key", *SupportTicket.model_fields]
    for row in sql_rows:
        assert row == {k: expected[row["_key"]].get(k) for k in row}
    assert not list((tmp_path / "out").glob(".*tmp*"))  # no temporary file left behind


def test_iterable_source_and_csv_source(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    tickets = sample_tickets(4, start=150)
    summary = run(
        tickets, chat_model, tmp_path / "a.jsonl", tmp_path / "qa.jsonl", tmp_path / "c.sqlite"
    )
    assert summary["valid"] == 4

    path = tmp_path / "tickets.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["ticket_id", "subject", "body"])
        writer.writeheader()
        for t in tickets:
            writer.writerow({k: t[k] for k in ("ticket_id", "subject", "body")})
    fresh_sim.reset()
    again = run(
        path, chat_model, tmp_path / "b.jsonl", tmp_path / "qb.jsonl", tmp_path / "c.sqlite"
    )
    # the same fields render the same text: the CSV run is served from the cache
    assert again["valid"] == 4 and fresh_sim.stats().requests == 0
    assert read_jsonl(tmp_path / "a.jsonl") == read_jsonl(tmp_path / "b.jsonl")


def test_per_record_tasks_mode(fresh_sim: Simulator, tmp_path: Path) -> None:
    records = sample_tickets(3, start=200)
    records.append({"ticket_id": "T-NOBODY", "subject": "no body"})
    source = write_jsonl(tmp_path / "tickets.jsonl", records)
    chat_model = make_model(fresh_sim)
    out, bad = tmp_path / "out.jsonl", tmp_path / "bad.jsonl"

    summary = run(source, chat_model, out, bad, tmp_path / "c.sqlite", per_record_tasks=True)

    assert (summary["records"], summary["valid"], summary["quarantined"]) == (4, 3, 1)
    # the record missing a field is never sent (an in-call retry on a loaded machine is counted)
    assert fresh_sim.stats().requests == 3 + summary["retries"]
    assert keys_of(read_jsonl(out), "_key") == [r["ticket_id"] for r in records[:3]]
    (quarantined,) = read_jsonl(bad)
    assert quarantined["key"] == "T-NOBODY" and quarantined["line"] == 4
    assert "'body'" in quarantined["reason"]

    fresh_sim.reset()
    run(source, chat_model, out, bad, tmp_path / "c.sqlite", per_record_tasks=True)
    assert fresh_sim.stats().requests == 0  # the extract task's own cache


# --- per record: quarantined with the reason and the line, the run goes on ---------------------


def test_bad_records_are_quarantined_with_reason_and_line(
    fresh_sim: Simulator, tmp_path: Path
) -> None:
    tickets = sample_tickets(4, start=250)
    huge = {"ticket_id": "T-HUGE", "subject": "Long story", "body": "My order is late. " * 900}
    rows: list[Any] = [
        tickets[0],
        "{not json at all",  # line 2
        tickets[1],
        {"ticket_id": "T-NOBODY", "subject": "no body"},  # line 4
        huge,  # line 5
        tickets[2],
        tickets[3],
    ]
    source = write_jsonl(tmp_path / "tickets.jsonl", rows)
    # a small context window: the huge record cannot fit, the others can
    chat_model = make_model(fresh_sim, context_window=1500, context_strategy="fail")
    out, bad = tmp_path / "out.jsonl", tmp_path / "bad.jsonl"

    summary = run(source, chat_model, out, bad, tmp_path / "c.sqlite", batch_size=3)

    assert (summary["records"], summary["valid"], summary["quarantined"]) == (7, 4, 3)
    assert fresh_sim.stats().requests == 4  # nothing sent for the bad ones
    by_line = {q["line"]: q for q in read_jsonl(bad)}
    assert set(by_line) == {2, 4, 5}
    assert "malformed JSON on line 2" in by_line[2]["reason"]
    assert by_line[2]["record"] == "{not json at all"
    assert "'body'" in by_line[4]["reason"]
    assert "ContextWindowExceededError" in by_line[5]["reason"]
    assert by_line[5]["key"] == "T-HUGE" and by_line[5]["record"]["ticket_id"] == "T-HUGE"
    assert keys_of(read_jsonl(out), "_key") == [t["ticket_id"] for t in tickets]


def test_csv_row_with_wrong_field_count_is_quarantined(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    tickets = sample_tickets(2, start=270)
    path = tmp_path / "tickets.csv"
    lines = ["ticket_id,subject,body"]
    lines.append(f'{tickets[0]["ticket_id"]},"{tickets[0]["subject"]}","Hi, I am Ada Byron."')
    lines.append("T-EXTRA,Subject,body,an extra field")  # line 3
    lines.append(f'{tickets[1]["ticket_id"]},"{tickets[1]["subject"]}","Mail ada@example.org"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    summary = run(path, chat_model, tmp_path / "out.jsonl", tmp_path / "bad.jsonl", tmp_path / "c")
    assert (summary["records"], summary["valid"], summary["quarantined"]) == (3, 2, 1)
    (quarantined,) = read_jsonl(tmp_path / "bad.jsonl")
    assert quarantined["line"] == 3
    assert quarantined["reason"] == "CSV line 3 has 4 fields, the header has 3"
    assert quarantined["record"] == "T-EXTRA,Subject,body,an extra field"
    assert fresh_sim.stats().requests == 2


# --- bad input: a clear error before any API call ------------------------------------------------


@pytest.fixture
def good_source(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "tickets.jsonl", sample_tickets(3))


def _regular_file(tmp_path: Path) -> Path:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file, not a folder")
    return blocker


BAD_INPUTS: list[tuple[str, Any, str]] = [
    ("missing source", {"source": "{tmp}/nowhere.jsonl"}, "nowhere.jsonl' does not exist"),
    ("source is a folder", {"source": "{tmp}/folder.jsonl"}, "folder.jsonl' does not exist or"),
    ("unknown source kind", {"source": "{tmp}/tickets.txt"}, "use a .jsonl (or .ndjson) or .csv"),
    ("schema module", {"schema": "no_such_pkg.tickets:Ticket"}, "'no_such_pkg.tickets' cannot"),
    (
        "schema attribute",
        {"schema": "prefect_openai_chat.examples.tickets:Nope"},
        "has no attribute 'Nope'",
    ),
    (
        "schema not a model",
        {"schema": "prefect_openai_chat.examples.tickets:TICKET_PROMPT"},
        "is a str, not a pydantic model",
    ),
    ("schema not a path", {"schema": "SupportTicket"}, "import path 'package.module:Model'"),
    ("prompt field", {"prompt": "{subject} {customer_tier}"}, "['customer_tier'], which no record"),
    ("prompt positional", {"prompt": "{0}"}, "positional field {0}"),
    ("output under a file", {"output": "{blocker}/out.jsonl"}, "output '"),
    ("quarantine under a file", {"quarantine": "{blocker}/q.jsonl"}, "quarantine '"),
    ("output extension", {"output": "{tmp}/out.xml"}, "use one of .jsonl"),
    ("same path for both", {"quarantine": "{tmp}/out.jsonl"}, "must be different files"),
    ("chunk size", {"batch_size": 0}, "chunk_size and concurrency must be at least 1"),
]


@pytest.mark.parametrize(("what", "change", "message"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_fails_before_any_api_call(
    fresh_sim: Simulator,
    chat_model: ChatModel,
    good_source: Path,
    tmp_path: Path,
    what: str,
    change: dict[str, Any],
    message: str,
) -> None:
    (tmp_path / "folder.jsonl").mkdir()
    (tmp_path / "tickets.txt").write_text(good_source.read_text())
    blocker = _regular_file(tmp_path)
    params: dict[str, Any] = {
        "source": str(good_source),
        "schema": SCHEMA_PATH,
        "chat_model": chat_model,
        "prompt": TICKET_PROMPT,
        "output": str(tmp_path / "out.jsonl"),
        "quarantine": str(tmp_path / "bad.jsonl"),
        "cache": str(tmp_path / "cache.sqlite"),
    }
    for name, value in change.items():
        if isinstance(value, str) and name != "prompt":
            value = value.replace("{tmp}", str(tmp_path)).replace("{blocker}", str(blocker))
        params[name] = value

    with pytest.raises(InvalidInputError) as raised:
        extract_records(**params)

    assert message in str(raised.value), what
    if "under a file" in what:
        assert "cannot be written" in str(raised.value)
        assert str(blocker) in str(raised.value)
    assert fresh_sim.stats().requests == 0
    assert not (tmp_path / "out.jsonl").exists()


def test_per_record_tasks_mode_quarantines_a_failed_call(
    fresh_sim: Simulator, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "tickets.jsonl", sample_tickets(2, start=210))
    chat_model = make_model(fresh_sim, fault="quota")  # never retried, at either tier
    out, bad = tmp_path / "out.jsonl", tmp_path / "bad.jsonl"

    summary = run(source, chat_model, out, bad, tmp_path / "c.sqlite", per_record_tasks=True)

    assert (summary["records"], summary["valid"], summary["quarantined"]) == (2, 0, 2)
    assert fresh_sim.stats().requests == 2
    quarantined = read_jsonl(bad)
    assert [q["outcome"] for q in quarantined] == ["error", "error"]
    assert all("InsufficientQuotaError" in q["reason"] for q in quarantined)


def test_the_progress_artifact_moves_at_most_once_a_second() -> None:
    """Each move is a call to the Prefect API; a night writes a group of records every few
    milliseconds, so the artifact moves at most once per `PROGRESS_EVERY_S`."""
    from prefect import flow

    from prefect_openai_chat.flows.summary import PROGRESS_EVERY_S, RunArtifacts

    def shown(artifact_id: UUID) -> Any:
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[artifact_id]))
            )
        return found[0].data

    @flow
    def night() -> list[Any]:
        artifacts = RunArtifacts(key_prefix="progress-test")
        artifacts.progress(1, 10)  # the first group moves it at once
        seen = [shown(artifacts.progress_id)]
        artifacts.progress(5, 10)  # the next, milliseconds later: not yet
        seen.append(shown(artifacts.progress_id))
        time.sleep(PROGRESS_EVERY_S)
        artifacts.progress(7, 10)
        seen.append(shown(artifacts.progress_id))
        return seen

    assert night() == [10.0, 10.0, 70.0]
