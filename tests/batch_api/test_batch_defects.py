"""Issue 21, the Batch API path: what it reads is checked, a batch has a deadline, errors are redacted.

Each test runs the real flow (`extract_records(..., via="batch")`) against the simulator's
batch endpoints with one of its batch faults, and checks that every record still ends
exactly once, with the reason, and that the run does not crash or hang.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from batch_flow_support import SCHEMA, batch_model, read_rows, run_night, tickets

from prefect_openai_chat import ExtractionSpec, RunOptions
from prefect_openai_chat.blocks import Retries
from prefect_openai_chat.examples.tickets import TICKET_PROMPT
from prefect_openai_chat.flows import extract_records
from prefect_openai_chat.simulator import Simulator

if TYPE_CHECKING:
    from prefect.events import Event

pytestmark = pytest.mark.usefixtures("isolated_results")


def ended_once(folder: Path, records: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """The rows and the quarantined records; every record is in exactly one of them."""
    rows = read_rows(folder / "rows.jsonl")
    bad = read_rows(folder / "quarantine.jsonl")
    keys = sorted([r["_key"] for r in rows] + [b["key"] for b in bad])
    assert keys == sorted(str(r["ticket_id"]) for r in records)
    return rows, bad


def warnings_of(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_malformed_result_lines_are_resent_with_the_reason_not_a_crash(
    batch_sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A line whose `response` or `error` is a string crashed collection (and every re-run)."""
    batch_sim.configure(batch_faults=["malformed-lines"])
    records = tickets(5)
    with caplog.at_level(logging.WARNING):
        summary = run_night(batch_sim, tmp_path, records)
    rows, _ = ended_once(tmp_path, records)
    assert summary["records"] == 5 == summary["valid"] == len(rows)
    assert batch_sim.stats().requests == 2  # the two malformed lines, sent again online
    said = warnings_of(caplog)
    assert "'response' is a str, not an object" in said
    assert "'error' is a str, not an object" in said


@pytest.mark.parametrize("unfinished", ["quarantine", "resubmit"])
def test_an_output_file_that_answers_404_abandons_the_batch(
    batch_sim: Simulator, tmp_path: Path, unfinished: str
) -> None:
    """A 404 on the output file failed the run, and every re-run collected it again."""
    batch_sim.configure(batch_faults=["missing-output"])
    records = tickets(5)
    summary = run_night(
        batch_sim,
        tmp_path,
        records,
        batch_options={"unfinished": unfinished, "max_rounds": 2},
    )
    rows, bad = ended_once(tmp_path, records)
    assert summary["records"] == 5
    stats = batch_sim.stats()
    if unfinished == "quarantine":
        assert len(bad) == 5 and stats.batches_created == 1 and stats.requests == 0
        for record in bad:
            assert "abandoned: its output file" in record["reason"]
            assert "could not be read (NotFoundError" in record["reason"]
    else:  # a second batch, its output file gone too, then online in the last round
        assert stats.batches_created == 2 and stats.requests == 5 and len(rows) == 5


def test_a_record_answered_twice_differently_is_quarantined_not_guessed(
    batch_sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A repeated custom_id silently took the last answer: here, another record's.

    Keeping the first answer could be just as wrong as keeping the last, so two
    different answers quarantine the record; the same answer twice is kept once.
    """
    batch_sim.configure(batch_faults=["duplicate-lines"])
    records = tickets(5)
    with caplog.at_level(logging.WARNING):
        summary = run_night(batch_sim, tmp_path, records)
    rows, bad = ended_once(tmp_path, records)
    assert len(bad) == 1 and len(rows) == 4 and summary["quarantined"] == 1
    assert "more than once, with different answers" in bad[0]["reason"]
    assert batch_sim.stats().requests == 0
    said = warnings_of(caplog)
    assert "a different answer; the record is quarantined" in said
    assert "the same answer again; kept once" in said


def test_an_answer_beats_a_failed_line_of_the_same_record(
    batch_sim: Simulator, tmp_path: Path
) -> None:
    """A 200 line in the output file and a 500 line in the error file: the paid answer wins."""
    batch_sim.configure(batch_faults=["output-and-error"])
    records = tickets(5)
    summary = run_night(batch_sim, tmp_path, records)
    ended_once(tmp_path, records)
    assert summary["valid"] == 5 == summary["batch_records"]
    assert batch_sim.stats().requests == 0  # nothing paid again online


def test_lines_of_records_the_batch_never_sent_are_ignored_with_a_warning(
    batch_sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    batch_sim.configure(batch_faults=["foreign-ids"])
    records = tickets(5)
    with caplog.at_level(logging.WARNING):
        summary = run_night(batch_sim, tmp_path, records)
    ended_once(tmp_path, records)
    assert summary["valid"] == 5 and batch_sim.stats().requests == 0
    assert "1 result line(s) for records this batch never sent" in warnings_of(caplog)


@pytest.mark.parametrize("unfinished", ["quarantine", "resubmit"])
def test_a_batch_past_its_deadline_is_cancelled_and_its_records_end(
    batch_sim: Simulator, tmp_path: Path, unfinished: str
) -> None:
    """A batch that stays in_progress was polled forever.

    The simulator releases the stuck batch after 60 s whatever happens, so this test
    ends (and fails) on code without a deadline instead of hanging.
    """
    batch_sim.configure(batch_faults=["stuck"])
    release = threading.Timer(60.0, lambda: batch_sim.configure(batch_faults=[]))
    release.start()
    records = tickets(4)
    started = time.monotonic()
    try:
        summary = run_night(
            batch_sim,
            tmp_path,
            records,
            batch_options={"deadline_s": 1.0, "unfinished": unfinished, "max_rounds": 2},
        )
    finally:
        release.cancel()
    elapsed = time.monotonic() - started
    rows, bad = ended_once(tmp_path, records)
    assert elapsed < 30, f"took {elapsed:.0f} s"
    stats = batch_sim.stats()
    if unfinished == "quarantine":
        assert len(bad) == 4 and stats.batches_created == 1
        for record in bad:
            assert "past its deadline of 1 s (batch option deadline_s)" in record["reason"]
            assert "cancelled" in record["reason"]
    else:  # resubmitted once (stuck again), then online in the last round
        assert stats.batches_created == 2 and stats.requests == 4 and len(rows) == 4
    assert summary["records"] == 4
    assert all(job.status == "cancelling" for job in _jobs(batch_sim))  # cancel was asked


def _jobs(sim: Simulator) -> list[Any]:
    return list(sim._state.batches.jobs.values())


def test_an_upload_error_echoing_the_key_is_redacted_everywhere(
    prefect_harness: None,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    emitted_events: Callable[[], list[Event]],
) -> None:
    """A 500 on the file upload echoing the key reached states, logs and events unredacted.

    The events are read as they leave this process (task run states reach the API only
    as events, and on a loaded machine the API stored them later than any fixed wait);
    the flow run's states and the logs are read back from the API.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    key = "sk-test-LEAKCANARY-" + secrets.token_hex(12)
    needles = [key, key[-8:]]
    with Simulator(
        profile="ideal", seed=5, api_keys=[key], batch_duration_s=0.4, batch_faults=["echo-key"]
    ) as sim:
        model = batch_model(sim).model_copy(
            update={"retries": Retries(max_attempts=2, backoff_base_s=0.01)}
        )
        with caplog.at_level(logging.DEBUG):
            state = extract_records(
                source=tickets(3),
                output=str(tmp_path / "rows.jsonl"),
                quarantine=str(tmp_path / "quarantine.jsonl"),
                spec=ExtractionSpec(
                    schema=SCHEMA,
                    prompt=TICKET_PROMPT,
                    key_field="ticket_id",
                ),
                chat_model=model,
                return_state=True,
                run=RunOptions(
                    via="batch",
                    batch_api={"poll_interval_s": 0.05},
                ),
            )
        uploads = sim.stats().by_status.get(500, 0)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    texts = {"state message": state.message or "", "exception": repr(error) + str(error)}
    assert "***" in texts["exception"]  # the echoed key, masked
    texts["caplog"] = caplog.text + "\n".join(repr(r.args) for r in caplog.records)
    events = emitted_events()
    texts["events"] = "\n".join(event.model_dump_json() for event in events)
    failed = [e for e in events if e.event == "prefect.task-run.Failed"]
    assert any("submit batches" in e.resource.name for e in failed)  # the task that failed
    APILogHandler().flush()
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        for flow_state in client.read_flow_run_states(run_id):
            texts[f"flow state {flow_state.name}"] = flow_state.model_dump_json()
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        texts["api logs"] = "\n".join(log.message for log in logs)
    quarantine = tmp_path / "quarantine.jsonl"
    texts["quarantine"] = quarantine.read_text() if quarantine.exists() else ""
    leaks = [where for where, text in texts.items() for n in needles if n in text]
    assert leaks == []
    assert uploads == 2  # the upload was retried by the model's policy (max_attempts=2)
