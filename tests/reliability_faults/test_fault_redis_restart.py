"""Redis stopped and restarted in the middle of an `extract_records` run.

The run shares its circuit and its learned rate limits through a redis-server of
the test's own (`ThrowawayRedis`, never the machine's Redis). A few seconds into
the run that server is killed, and started again (empty: no persistence) a few
seconds later. The run must finish with every record accounted for exactly once,
say what happened in its log (fallback, then rejoin), and keep the simulator's
rate limit (a bounded number of 429s).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flow_support import make_model, read_jsonl, sample_tickets, write_jsonl
from redis_support import throwaway_redis_server
from registry_support import clear_resilience

from prefect_openai_chat import ChatModel, ExtractionSpec, RunOptions
from prefect_openai_chat.examples.tickets import TICKET_PROMPT
from prefect_openai_chat.flows import extract_records
from prefect_openai_chat.resilience.limiter_redis import SharedRateLimiter
from prefect_openai_chat.resilience.limiter_registry import get_rate_limiter
from prefect_openai_chat.simulator import Simulator

RECORDS = 300
RPM = 30  # per rate-limit "minute" of one second (time_scale=60): ~10 s of calls
DOWN_AFTER, DOWN_FOR_S = 20, 3.0  # requests sent before Redis goes away; seconds away


@pytest.fixture
def own_redis() -> Iterator[Any]:
    yield from throwaway_redis_server()


@pytest.fixture
def limited_sim() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=5, rpm=RPM, tpm=10_000_000, time_scale=60.0) as sim:
        yield sim


def _outage(redis: Any, sim: Simulator, how: str, log: list[str]) -> threading.Thread:
    """Once the simulator has seen DOWN_AFTER requests, kill `redis` (`killed`: connections refused, then a new empty server on
    the same port) or freeze it (`frozen`: SIGSTOP, connections accepted and never answered,
    then SIGCONT) for DOWN_FOR_S."""

    def run() -> None:
        while sim.stats().requests < DOWN_AFTER:
            time.sleep(0.05)
        if how == "killed":
            redis.stop()
        else:
            os.kill(redis.proc.pid, signal.SIGSTOP)
        log.append(f"{how} after request {sim.stats().requests}")
        time.sleep(DOWN_FOR_S)
        if how == "killed":
            redis.start()
        else:
            os.kill(redis.proc.pid, signal.SIGCONT)
        log.append(f"back after request {sim.stats().requests}")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def rejoin_after_the_run(model: ChatModel, redis_url: str) -> None:
    """If the run ended before the limiter's next look at Redis, a call after it rejoins.

    The limiter looks again 5 s after it found Redis away, at its next reservation; a
    run that ends sooner leaves it on its local share, and the next call rejoins.
    """
    limiter = get_rate_limiter(model.rate_limit_key(), redis_url=redis_url)
    assert isinstance(limiter, SharedRateLimiter)
    deadline = time.monotonic() + 3 * limiter.recheck_s
    while not limiter.shared and time.monotonic() < deadline:
        asyncio.run(limiter.acquire())
        time.sleep(0.2)
    assert limiter.shared


@pytest.mark.slow  # ~10 s: started early, not last
@pytest.mark.parametrize("how", ["killed", "frozen"])
def test_a_run_survives_redis_going_away_and_coming_back(
    how: str,
    own_redis: Any,
    limited_sim: Simulator,
    isolated_results: None,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clear_resilience()
    tickets = sample_tickets(RECORDS)
    source = write_jsonl(tmp_path / "tickets.jsonl", tickets)
    model = make_model(limited_sim, redis_url=own_redis.url, backoff_base_s=0.05)
    out, bad = tmp_path / "out.jsonl", tmp_path / "quarantine.jsonl"
    timeline: list[str] = []
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="prefect_openai_chat"):
        outage = _outage(own_redis, limited_sim, how, timeline)
        summary = extract_records(
            source=str(source),
            output=str(out),
            quarantine=str(bad),
            spec=ExtractionSpec(
                schema="prefect_openai_chat.examples.tickets:SupportTicket",
                prompt=TICKET_PROMPT,
                key_field="ticket_id",
            ),
            chat_model=model,
            run=RunOptions(
                chunk_size=50,
                concurrency=16,
                cache=str(tmp_path / "cache.sqlite"),
            ),
        )
        wall = time.monotonic() - started
        stats = limited_sim.stats()
        print(f"{how}: requests {stats.requests}, {stats.by_status}, wall {wall:.1f}s, {timeline}")
        outage.join(timeout=30)
        rejoin_after_the_run(model, own_redis.url)
    assert len(timeline) == 2, timeline

    # Nothing lost, nothing twice.
    rows, quarantined = read_jsonl(out), read_jsonl(bad)
    keys = [r["_key"] for r in rows] + [q["key"] for q in quarantined]
    assert sorted(keys) == sorted(str(t["ticket_id"]) for t in tickets)
    assert len(set(keys)) == RECORDS
    assert summary["records"] == RECORDS == summary["valid"] + summary["quarantined"]

    # Warned on the way out and on the way back, for the limiter and the circuit.
    said = [r.getMessage() for r in caplog.records]
    assert any("keeps its state in this process" in m for m in said), said
    assert any("shares its state again" in m for m in said), said
    went = [m for m in said if "rate limiter" in m and "does not answer" in m]
    back = [m for m in said if "rate limiter" in m and "answers again" in m]
    if how == "killed":  # a frozen Redis may be waited out by the calls that were waiting
        assert went, said
    assert len(back) == len(went) <= 2, said  # one rejoin per time away, no flapping

    # The rate stayed within the limit: the shared buckets paced it, the local share too.
    too_many = stats.by_status.get(429, 0)
    assert stats.by_status.get(200, 0) >= RECORDS
    assert too_many <= 0.1 * RECORDS, stats.by_status  # the same as without an outage
