"""`extract_records` on a shared ledger: a record done anywhere is never paid again.

Real flows on the session's Prefect API, the real `openai` client and the simulator
over HTTP; the concurrent runs are two spawned processes sharing a PostgreSQL ledger
(two processes on one SQLite file race in tests/ledger/test_ledger_backends.py). The simulator's `ideal`
profile answers every record in exactly one request, so its request count is the
number of records paid for: equal to the number of distinct records, no record was
requested twice.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ledger_support import SPAWN_TIMEOUT_S, extract_in_child
from model_support import fast_model
from prefect.settings import PREFECT_API_URL

from prefect_openai_chat import BatchReport
from prefect_openai_chat.errors import InvalidInputError, LedgerError
from prefect_openai_chat.examples.tickets import TICKET_PROMPT, SupportTicket, sample_tickets_path
from prefect_openai_chat.flows import extract_records
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.tasks.batch import aextract_batch

pytestmark = pytest.mark.filterwarnings('ignore:Field name "schema"')
SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture(autouse=True)
def _harness(isolated_results: None) -> None:
    """The session's Prefect test API; task results per test."""


@pytest.fixture(scope="module")
def slow_sim() -> Iterator[Simulator]:
    """Every answer takes a while, so that concurrent runs overlap."""
    with Simulator(profile="ideal", seed=23, ttft_s=0.25) as simulator:
        yield simulator


@pytest.fixture
def sim(slow_sim: Simulator) -> Simulator:
    slow_sim.reset()
    return slow_sim


def sample_tickets(n: int) -> list[dict[str, Any]]:
    with sample_tickets_path().open(encoding="utf-8") as handle:
        return [json.loads(line) for line in itertools.islice(handle, n)]


def tickets_file(tmp_path: Path, n: int) -> Path:
    lines = sample_tickets_path().read_text(encoding="utf-8").splitlines()[:n]
    path = tmp_path / "tickets.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def keys_in(path: Path) -> list[str]:
    return sorted(json.loads(line)["_key"] for line in path.read_text().splitlines())


def test_a_rerun_on_the_ledger_makes_no_request(
    sim: Simulator, cache_setting: str, tmp_path: Path
) -> None:
    source = tickets_file(tmp_path, 12)

    def run(name: str) -> dict[str, Any]:
        return extract_records(  # type: ignore[no-any-return]
            source=str(source),
            schema=SupportTicket,
            chat_model=fast_model(sim.base_url, sim.api_key),
            prompt=TICKET_PROMPT,
            output=str(tmp_path / f"{name}.jsonl"),
            quarantine=str(tmp_path / f"{name}-quarantine.jsonl"),
            key_field="ticket_id",
            batch_size=5,
            concurrency=6,
            cache=cache_setting,
        )

    first = run("first")
    assert first["valid"] == 12 and first["from_cache"] == 0
    assert sim.stats().requests == 12
    second = run("second")
    assert second["valid"] == 12 and second["from_cache"] == 12
    assert sim.stats().requests == 12  # nothing more was sent
    assert second["total_tokens"] == 0
    assert (tmp_path / "second.jsonl").read_text() == (tmp_path / "first.jsonl").read_text()


@pytest.mark.slow  # two spawned interpreters import Prefect: ~10 s on an idle 2-core machine
def test_two_concurrent_runs_on_one_postgres_ledger_never_pay_twice(
    sim: Simulator, postgres_ledger_url: str, tmp_path: Path
) -> None:
    records = 40
    source = tickets_file(tmp_path, records)
    env = {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_LOGGING_LEVEL": "WARNING"}
    barrier, results = SPAWN.Barrier(2), SPAWN.Queue()
    workers = []
    for name in ("a", "b"):
        job = {
            "base_url": sim.base_url,
            "api_key": sim.api_key,
            "source": str(source),
            "output": str(tmp_path / f"{name}.jsonl"),
            "quarantine": str(tmp_path / f"{name}-quarantine.jsonl"),
            "batch_size": 10,
            "concurrency": 3,
            "cache": postgres_ledger_url,
        }
        env_of_worker = {**env, "PREFECT_HOME": str(tmp_path / f"prefect-home-{name}")}
        worker = SPAWN.Process(target=extract_in_child, args=(env_of_worker, job, barrier, results))
        worker.start()
        workers.append(worker)
    summaries = [results.get(timeout=SPAWN_TIMEOUT_S) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert all("error" not in s for s in summaries), summaries

    stats = sim.stats()
    assert stats.requests == records and stats.by_status == {200: records}  # each once
    assert stats.reprompts == 0
    paid = [s["records"] - s["from_cache"] for s in summaries]
    assert sum(paid) == records, paid  # who paid for what depends on when each run started
    expected = sorted(json.loads(line)["ticket_id"] for line in source.read_text().splitlines())
    for name, summary in zip(("a", "b"), summaries, strict=True):
        assert summary["records"] == summary["valid"] == records
        assert keys_in(tmp_path / f"{name}.jsonl") == expected  # every output is complete


def test_a_bad_ledger_setting_fails_before_any_request(sim: Simulator, tmp_path: Path) -> None:
    source = tickets_file(tmp_path, 3)
    options: dict[str, Any] = {
        "source": str(source),
        "schema": SupportTicket,
        "chat_model": fast_model(sim.base_url, sim.api_key),
        "prompt": TICKET_PROMPT,
        "output": str(tmp_path / "out.jsonl"),
        "quarantine": str(tmp_path / "bad.jsonl"),
    }
    with pytest.raises(InvalidInputError, match="scheme 'redis' is not supported"):
        extract_records(**options, cache="redis://127.0.0.1:6379/0")
    with pytest.raises(LedgerError, match="cannot reach the PostgreSQL ledger"):
        extract_records(**options, cache="postgresql://postgres@127.0.0.1:1/test")
    assert sim.stats().requests == 0
    assert not (tmp_path / "out.jsonl").exists()


def test_two_batches_started_together_share_the_records(sim: Simulator, cache_setting: str) -> None:
    """Two workers' batches over the same records at the same instant: each record paid once,
    by one of them; the other waits for it and takes the outcome from the ledger."""
    records = sample_tickets(30)
    chat_model = fast_model(sim.base_url, sim.api_key)

    async def worker() -> BatchReport:
        return await aextract_batch.fn(  # type: ignore[no-any-return]
            chat_model,
            SupportTicket,
            records,
            prompt=TICKET_PROMPT,
            key_field="ticket_id",
            concurrency=3,
            cache=cache_setting,
            progress=False,
        )

    async def both() -> list[BatchReport]:
        return list(await asyncio.gather(worker(), worker()))

    reports = asyncio.run(both())
    assert sim.stats().requests == len(records)  # every record requested once
    paid = [sum(not o.cached for o in report.records) for report in reports]
    assert sum(paid) == len(records) and all(p > 0 for p in paid), paid  # shared, not copied
    for report in reports:
        assert report.valid == len(records)
        assert [o.key for o in report.records] == [r["ticket_id"] for r in records]
