"""extract_batch / aextract_batch inside real Prefect flows, against the simulator over HTTP.

Per-record outcomes in order, the concurrency bound, the SQLite record cache (what
it keeps and what it must not keep), the task tier inside the batch, and a whole
batch against the unforced `sloppy-json` profile.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from prefect_openai_chat import BatchReport, ChatModel, OpenAICredentials
from prefect_openai_chat.blocks.sections import nest_flat_fields
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.examples.tickets import (
    TICKET_PROMPT,
    SupportTicket,
    TicketTriage,
    sample_tickets_path,
)
from prefect_openai_chat.extraction.ledger import SqliteLedger
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.tasks.batch import aextract_batch, extract_batch

MODEL = "gpt-4o-mini-2024-07-18"


@pytest.fixture(autouse=True)
def _no_heartbeat_join(prefect_harness: None) -> Iterator[None]:
    """A sync flow otherwise waits up to 1 s for its heartbeat thread on exit."""
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@pytest.fixture
def sim_clean(sim: Simulator) -> Iterator[Simulator]:
    """The module's ideal simulator, zeroed; scripted faults and latency undone after."""
    sim.reset()
    yield sim
    sim.configure(script=[], ttft_s=0.0, outages=[])
    sim.reset()


def tickets(n: int, start: int = 0) -> list[dict[str, Any]]:
    with sample_tickets_path().open(encoding="utf-8") as handle:
        lines = itertools.islice(handle, start, start + n)
        return [json.loads(line) for line in lines]


def model_for(sim: Simulator, fault: str | None = None, **settings: Any) -> ChatModel:
    headers = {"x-simulator-fault": fault} if fault else None
    credentials = OpenAICredentials(
        base_url=sim.base_url, api_key=sim.api_key, default_headers=headers
    )
    options: dict[str, Any] = {"read_timeout_s": 5.0, **settings}
    return ChatModel(credentials=credentials, model=MODEL, **nest_flat_fields(options))


def run_batch(chat_model: ChatModel, records: list[Any], **kw: Any) -> BatchReport:
    options: dict[str, Any] = {"prompt": TICKET_PROMPT, "key_field": "ticket_id", **kw}
    schema = options.pop("schema", SupportTicket)
    options.setdefault("progress", False)

    @flow
    def one_batch() -> BatchReport:
        return extract_batch(chat_model, schema, records, **options)

    return one_batch()


def test_outcomes_per_record_in_order(sim_clean: Simulator, tmp_path: Path) -> None:
    records = tickets(10)
    records.insert(4, {"ticket_id": "T-NOBODY", "subject": "no body field"})

    report = run_batch(model_for(sim_clean), records, cache=tmp_path / "c.sqlite")

    assert [o.index for o in report.records] == list(range(11))
    assert [o.key for o in report.records] == [r["ticket_id"] for r in records]
    skipped = report.records[4]
    assert (skipped.ok, skipped.outcome, skipped.calls) == (False, "skipped", 0)
    assert "'body'" in (skipped.reason or "") and "prompt template" in (skipped.reason or "")
    assert report.total == 11 and report.valid == 10 and report.failed == 1
    for record, outcome in zip(records, report.records, strict=True):
        if outcome.ok:
            assert outcome.value is not None
            SupportTicket.model_validate(outcome.value)
            assert outcome.value["email"].lower() in record["body"].lower()
            assert outcome.calls == 1 and not outcome.cached
    stats = sim_clean.stats()
    assert stats.requests == 10
    assert report.usage.prompt_tokens == stats.prompt_tokens
    assert report.usage.completion_tokens == stats.completion_tokens
    assert report.cost_usd is not None and report.cost_usd > 0


def test_records_without_prompt_are_sent_as_json_or_text(
    sim_clean: Simulator, tmp_path: Path
) -> None:
    texts = [t["subject"] + "\n\n" + t["body"] for t in tickets(2)]
    report = run_batch(
        model_for(sim_clean),
        texts,
        prompt=None,
        key_field=None,
        cache=False,
        start_index=40,
        progress=True,  # the rich bar also works where stderr is not a terminal
    )
    assert [o.key for o in report.records] == ["40", "41"]
    assert report.valid == 2 and sim_clean.stats().requests == 2


def test_concurrency_bound_is_respected(sim_clean: Simulator) -> None:
    sim_clean.configure(ttft_s=0.03)  # answers take a while, so calls overlap
    report = run_batch(model_for(sim_clean), tickets(16), concurrency=3, cache=False)

    assert report.valid == 16
    peak = sim_clean.stats().concurrent_peak
    assert 2 <= peak <= 3


def test_record_cache_skips_done_records_and_redoes_on_changes(
    sim_clean: Simulator, tmp_path: Path
) -> None:
    cache = tmp_path / "records.sqlite"
    records = tickets(8)
    chat_model = model_for(sim_clean)

    first = run_batch(chat_model, records, cache=cache)
    assert first.valid == 8 and sim_clean.stats().requests == 8
    assert len(SqliteLedger(cache)) == 8

    sim_clean.reset()
    again = run_batch(chat_model, records, cache=cache)
    assert sim_clean.stats().requests == 0
    assert all(o.cached for o in again.records)
    assert [o.value for o in again.records] == [o.value for o in first.records]
    assert [o.key for o in again.records] == [o.key for o in first.records]

    sim_clean.reset()
    run_batch(chat_model, records, cache=cache, prompt="Ticket: {subject}\n{body}")
    assert sim_clean.stats().requests == 8  # changed prompt: all re-done

    sim_clean.reset()
    triage = run_batch(chat_model, records, cache=cache, schema=TicketTriage)
    assert triage.valid == 8 and sim_clean.stats().requests == 8  # changed schema

    sim_clean.reset()
    run_batch(chat_model, records, cache=False)
    assert sim_clean.stats().requests == 8  # no cache at all


def test_final_failures_are_cached_too(sim_clean: Simulator, tmp_path: Path) -> None:
    cache = tmp_path / "records.sqlite"
    refused = run_batch(model_for(sim_clean, "refusal"), tickets(3), cache=cache)
    assert [o.outcome for o in refused.records] == ["refused"] * 3
    assert all("refused" in (o.reason or "") for o in refused.records)
    assert all(o.last_raw_output for o in refused.records)

    sim_clean.reset()
    again = run_batch(model_for(sim_clean, "refusal"), tickets(3), cache=cache)
    assert sim_clean.stats().requests == 0
    assert [o.outcome for o in again.records] == ["refused"] * 3


def test_transient_errors_are_not_cached(sim_clean: Simulator, tmp_path: Path) -> None:
    cache = tmp_path / "records.sqlite"
    sim_clean.configure(script=["503", "ok", "503"])
    sim_clean.reset()
    # no in-call retry, no task tier: the 503s end as per-record errors
    chat_model = model_for(sim_clean, max_attempts=1, task_retries=0, circuit_failures=50)

    first = run_batch(chat_model, tickets(5), cache=cache, concurrency=1)
    outcomes = [o.outcome for o in first.records]
    assert outcomes == ["error", "ok", "error", "ok", "ok"]
    failed = first.records[0]
    assert not failed.ok and failed.calls == 1 and "503" in (failed.reason or "")
    assert len(SqliteLedger(cache)) == 3

    sim_clean.configure(script=[])
    sim_clean.reset()
    second = run_batch(chat_model, tickets(5), cache=cache, concurrency=1)
    assert sim_clean.stats().requests == 2  # only the two that failed
    assert second.valid == 5
    assert [o.cached for o in second.records] == [False, True, False, True, True]


def test_task_tier_inside_the_batch_tries_again_after_the_reset_timeout(
    sim_clean: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim_clean.configure(script=["503"])
    sim_clean.reset()
    chat_model = model_for(
        sim_clean,
        max_attempts=1,
        task_retries=1,
        circuit_reset_timeout_s=0.05,
        circuit_failures=50,
    )
    report = run_batch(chat_model, tickets(3), cache=tmp_path / "c.sqlite", concurrency=1)

    assert report.valid == 3
    assert sim_clean.stats().requests == 4
    assert sim_clean.stats().by_status == {503: 1, 200: 3}
    # the operator sees which record waits, why, and for how long
    (said,) = [r.getMessage() for r in caplog.records if "runs again" in r.getMessage()]
    assert said.startswith("record T-0000") and "InternalServerError" in said
    assert said.endswith("its extraction runs again in 0.05 s (round 2)")


def test_an_outage_logs_three_records_of_a_chunk_going_to_the_task_tier_not_all(
    sim_clean: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim_clean.configure(script=["503"] * 5)
    sim_clean.reset()
    chat_model = model_for(
        sim_clean, max_attempts=1, task_retries=3, circuit_reset_timeout_s=0.05,
        circuit_failures=50,
    )  # fmt: skip
    report = run_batch(chat_model, tickets(5), cache=tmp_path / "c.sqlite", concurrency=1)
    # five 503s, one per waiting round, wherever they fell: every record valid in the end

    assert report.valid == 5 and sim_clean.stats().by_status == {503: 5, 200: 5}
    said = [r.getMessage() for r in caplog.records if "runs again" in r.getMessage()]
    assert len(said) == 3
    assert said[-1].endswith("other records of this chunk that wait too are not logged")


def test_quota_error_is_not_tried_again_by_either_tier(
    sim_clean: Simulator, tmp_path: Path
) -> None:
    chat_model = model_for(sim_clean, "quota", task_retries=2, circuit_reset_timeout_s=0.05)
    report = run_batch(chat_model, tickets(2), cache=tmp_path / "c.sqlite", concurrency=1)

    assert [o.outcome for o in report.records] == ["error", "error"]
    assert all("InsufficientQuota" in (o.reason or "") for o in report.records)
    assert sim_clean.stats().requests == 2


def test_sloppy_profile_batch_is_valid_and_accounted(tmp_path: Path) -> None:
    with Simulator(profile="sloppy-json", seed=21) as sloppy:
        report = run_batch(
            model_for(sloppy, max_completion_tokens=400),
            tickets(60, start=100),
            cache=tmp_path / "c.sqlite",
            concurrency=1,  # fault draws in arrival order: the same records every run
        )
        stats = sloppy.stats()

    assert report.total == 60
    assert report.valid >= 58
    assert any(o.repaired for o in report.records)
    assert any(o.reprompts for o in report.records)
    assert sum(o.calls for o in report.records) == stats.requests
    assert sum(o.reprompts for o in report.records) == stats.reprompts
    assert report.usage.prompt_tokens == stats.prompt_tokens
    assert report.usage.completion_tokens == stats.completion_tokens
    for outcome in report.records:
        if not outcome.ok:
            assert outcome.reason and outcome.outcome in ("invalid", "truncated")


async def test_async_batch_in_an_async_flow(sim_clean: Simulator, tmp_path: Path) -> None:
    chat_model = model_for(sim_clean)
    cache = tmp_path / "c.sqlite"

    @flow
    async def batch() -> BatchReport:
        return await aextract_batch(
            chat_model,
            SupportTicket,
            tickets(6),
            prompt=TICKET_PROMPT,
            key_field="ticket_id",
            concurrency=4,
            cache=cache,
            progress=False,
        )

    report = await batch()
    assert report.valid == 6 and sim_clean.stats().requests == 6
    sim_clean.reset()
    again = await batch()
    assert again.valid == 6 and sim_clean.stats().requests == 0


def test_bad_concurrency_fails_before_any_request(sim_clean: Simulator) -> None:
    with pytest.raises(InvalidInputError, match="concurrency must be at least 1"):
        run_batch(model_for(sim_clean), tickets(2), concurrency=0, cache=False)
    assert sim_clean.stats().requests == 0
