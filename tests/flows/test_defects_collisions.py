"""Issue #21: every path collision refused before any call; one run at a time on an output.

Real flows against the simulator. The default ledger of `isolated_results` (tests/conftest.py)
is `tmp_path / "record-cache.sqlite"`, as `tasks/batch.py::default_cache_path()` gives it.
"""

from __future__ import annotations

import contextvars
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flow_defects_support import run_flow
from flow_support import read_jsonl, sample_tickets, write_jsonl

from prefect_openai_chat import ChatModel
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.flows.sinks import check_distinct, lock_path, recover_outputs
from prefect_openai_chat.simulator import Simulator

pytestmark = pytest.mark.filterwarnings('ignore:Field name "schema"')

DEFAULT_LEDGER = "record-cache.sqlite"  # what isolated_results makes the default ledger

# --- 1. every path collision refused ------------------------------------------------------------


@pytest.mark.parametrize("role", ["output", "quarantine"])
@pytest.mark.parametrize("origin", ["default", "environment"])
def test_an_output_on_the_implicit_ledger_is_refused_and_the_ledger_survives(
    fresh_sim: Simulator,
    chat_model: ChatModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    role: str,
    origin: str,
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", sample_tickets(2, start=200))
    ledger = tmp_path / DEFAULT_LEDGER
    if origin == "environment":
        ledger = tmp_path / "env-ledger.sqlite"
        monkeypatch.setenv("PREFECT_OPENAI_CHAT_CACHE", str(ledger))
    first = run_flow(source, chat_model, tmp_path, cache=True)
    assert first["valid"] == 2 and fresh_sim.stats().requests == 2

    with pytest.raises(InvalidInputError) as raised:
        run_flow(source, chat_model, tmp_path, cache=True, **{role: str(ledger)})

    message = str(raised.value)
    named = "the default record ledger" if origin == "default" else "PREFECT_OPENAI_CHAT_CACHE"
    assert f"{role} and cache (" in message and named in message
    assert "must be different files" in message and str(ledger) in message
    assert fresh_sim.stats().requests == 2  # refused before any call
    again = run_flow(source, chat_model, tmp_path, cache=True)  # the ledger is still a ledger
    assert (again["valid"], again["from_cache"]) == (2, 2)
    assert fresh_sim.stats().requests == 2


@pytest.mark.parametrize(
    "name, what",
    [
        (".out.jsonl.commit", "output's commit journal"),
        (".out.jsonl.lock", "output's lock file"),
        (".bad.jsonl.lock", "quarantine's lock file"),
        (".out.jsonl.tmp-1", "output"),  # a dead process's temporary: removed by recovery
    ],
)
def test_a_ledger_on_a_file_the_run_writes_beside_its_outputs_is_refused(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path, name: str, what: str
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", sample_tickets(1, start=210))
    with pytest.raises(InvalidInputError) as raised:
        run_flow(source, chat_model, tmp_path, cache=str(tmp_path / name))
    message = str(raised.value)
    assert f"{what} and cache must be different files" in message, message
    assert name in message
    assert fresh_sim.stats().requests == 0


def test_a_ledger_where_the_batch_api_keeps_its_batch_ledger_is_refused(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", sample_tickets(1, start=215))
    ledger = tmp_path / "batch-runs"  # the Batch API's folder beside a ledger of that name
    with pytest.raises(InvalidInputError) as raised:
        run_flow(source, chat_model, tmp_path, cache=str(ledger), via="batch")
    message = str(raised.value)
    assert "cache and the Batch API's batch-ledger folder must be different files" in message
    assert fresh_sim.stats().requests == 0


def test_a_sharded_run_makes_the_same_checks(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", sample_tickets(4, start=220))
    with pytest.raises(InvalidInputError, match=r"output and cache \(the default record ledger\)"):
        run_flow(
            source,
            chat_model,
            tmp_path,
            cache=True,
            output=str(tmp_path / DEFAULT_LEDGER),
            shards=2,
        )
    assert fresh_sim.stats().requests == 0
    assert not list(tmp_path.glob(".*.shards-*"))  # no part folder either


def test_no_file_may_lie_in_a_sharded_runs_part_folder(tmp_path: Path) -> None:
    folder = tmp_path / ".out.jsonl.shards-1234"
    roles: dict[str, Path | None] = {"output": tmp_path / "out.jsonl", "cache": folder / "c.db"}
    with pytest.raises(InvalidInputError, match="inside the sharded run's part folder"):
        check_distinct(roles, {"the sharded run's part folder": folder})


# --- 3. two runs on one output ------------------------------------------------------------------


def _in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `work` in a thread with this context (the test's Prefect settings); its result."""
    result: dict[str, Any] = {}
    context = contextvars.copy_context()

    def target() -> None:
        try:
            result["value"] = context.run(work)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


@pytest.fixture
def slow_answers(fresh_sim: Simulator) -> Iterator[Simulator]:
    fresh_sim.configure(ttft_s=0.3)
    yield fresh_sim


def _wait_for(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the first run did not start in time"
        time.sleep(0.02)


def test_a_second_run_on_a_busy_output_is_refused_and_the_first_finishes(
    slow_answers: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    # One record at a time, 1 s each: the first run writes for 20 s, time enough for the
    # second run to start even on a busy machine; once it is refused, the rest goes fast.
    slow_answers.configure(ttft_s=1.0)
    tickets = sample_tickets(20, start=230)
    first_source = write_jsonl(tmp_path / "first.jsonl", tickets)
    second_source = write_jsonl(tmp_path / "second.jsonl", sample_tickets(3, start=260))
    out = tmp_path / "out.jsonl"
    options = {"batch_size": 1, "concurrency": 1}
    thread, first = _in_thread(lambda: run_flow(first_source, chat_model, tmp_path, **options))
    _wait_for(lambda: slow_answers.stats().requests >= 1)

    with pytest.raises(InvalidInputError) as raised:
        run_flow(second_source, chat_model, tmp_path, cache=str(tmp_path / "other.sqlite"))
    slow_answers.configure(ttft_s=0.0)

    thread.join(120)
    message = str(raised.value)
    assert f"another run is writing output {str(out)!r}" in message, message
    assert "error" not in first, first.get("error")
    assert first["value"]["valid"] == 20
    assert [r["_key"] for r in read_jsonl(out)] == [t["ticket_id"] for t in tickets]
    assert slow_answers.stats().requests == 20  # the refused run sent nothing
    assert not lock_path(out).exists()  # released with the run


def test_recovery_never_takes_a_live_runs_files_for_a_dead_ones(
    slow_answers: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    tickets = sample_tickets(3, start=250)
    source = write_jsonl(tmp_path / "in.jsonl", tickets)
    out, bad = tmp_path / "out.jsonl", tmp_path / "bad.jsonl"
    options = {"batch_size": 1, "concurrency": 1}
    thread, first = _in_thread(lambda: run_flow(source, chat_model, tmp_path, **options))
    _wait_for(lambda: slow_answers.stats().requests >= 1)
    live = sorted(p.name for p in tmp_path.glob(".*.tmp-*"))
    assert live  # the run's temporaries, named with this process's id

    with pytest.raises(InvalidInputError, match="another run is writing output"):
        recover_outputs(out, bad)

    assert sorted(p.name for p in tmp_path.glob(".*.tmp-*")) == live
    thread.join(120)
    assert "error" not in first, first.get("error")
    assert [r["_key"] for r in read_jsonl(out)] == [t["ticket_id"] for t in tickets]


HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, b"otherhost:4242")
print("locked", flush=True)
time.sleep(120)
"""


def test_a_run_in_another_process_blocks_the_output_until_that_process_dies(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", sample_tickets(2, start=260))
    out = tmp_path / "out.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_path(out))], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(InvalidInputError) as raised:
            run_flow(source, chat_model, tmp_path)
        assert "another run is writing output" in str(raised.value)
        assert "otherhost:4242" in str(raised.value)  # who holds it
        assert fresh_sim.stats().requests == 0
    finally:
        holder.kill()  # a crash: no cleanup, the lock file stays behind
        holder.wait(10)
    assert lock_path(out).exists()

    summary = run_flow(source, chat_model, tmp_path)  # a dead holder's file blocks nothing

    assert summary["valid"] == 2 and fresh_sim.stats().requests == 2
    assert not lock_path(out).exists()
