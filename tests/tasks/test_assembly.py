"""Assembling a call: one factory, one client cache, clients closed with their loops,
circuit trips counted per run."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import io
import logging
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import openai
import pytest
from fork_scenarios import SCENARIOS
from resilience_support import clear_resilience

from prefect_openai_chat import ChatModel, OpenAICredentials
from prefect_openai_chat._sync import _ProcessLoop, _shut_down, run_sync
from prefect_openai_chat.blocks import Circuit
from prefect_openai_chat.blocks import chat_model as chat_model_module
from prefect_openai_chat.blocks import credentials as credentials_module
from prefect_openai_chat.blocks.assembly import RUNNERS
from prefect_openai_chat.chat.clients import CLIENTS, ClientCache
from prefect_openai_chat.resilience import CircuitGuard
from prefect_openai_chat.tasks import events


def _model() -> ChatModel:
    return ChatModel(
        credentials=OpenAICredentials(api_key="sk-assembly", base_url="http://127.0.0.1:9/v1"),
        model="gpt-4o-mini",
    )


def test_a_runner_reads_its_client_from_the_one_cache() -> None:
    model = _model()

    async def clients() -> tuple[object, object, object]:
        _, runner = await RUNNERS.assemble(model)
        return runner.sender.client(), runner.sender.client(), model.get_client(async_client=True)

    first, again, the_blocks = asyncio.run(clients())
    assert first is again is the_blocks  # the runner and the block share one cached client


def test_clients_of_a_sync_thread_close_when_the_thread_ends() -> None:
    made: list[openai.AsyncOpenAI] = []

    async def take() -> None:
        made.append(_model().get_client(async_client=True))  # type: ignore[arg-type]

    def work() -> None:
        run_sync(take())
        run_sync(take())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    gc.collect()
    assert made[0] is made[1]  # one loop per thread: reused from call to call
    # the thread ended: its loop is shut down (on a thread of its own) and closes the client
    deadline = time.monotonic() + 10
    while not made[0].is_closed() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert made[0].is_closed()


def test_a_loop_released_while_a_logging_lock_is_held_does_not_deadlock() -> None:
    """The finalizer may run inside a logging handler (the garbage collector runs anywhere).

    Found by the suite: a loop's finalizer ran while a task thread was inside Prefect's
    console handler, and waited for a thread whose client close logged through that
    handler: both waited for ever.
    """
    handler = logging.StreamHandler(io.StringIO())
    logger = logging.getLogger("prefect_openai_chat.tests.deadlock")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    loop = _ProcessLoop()

    async def logs_on_close() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            logger.debug("closing a client")  # as httpcore does while a client closes

    task = loop.create_task(logs_on_close())
    loop.run_until_complete(asyncio.sleep(0))  # the task starts and waits

    async def release_inside_the_handler() -> None:  # a thread whose own loop runs
        handler.acquire()
        try:
            task.cancel()
            _shut_down(loop)  # what the garbage collector would call here
        finally:
            handler.release()

    finished = threading.Event()
    worker = threading.Thread(
        target=lambda: (asyncio.run(release_inside_the_handler()), finished.set()), daemon=True
    )
    worker.start()
    assert finished.wait(5), "the finalizer waited for a thread that waits for its lock"
    deadline = time.monotonic() + 10
    while not loop.is_closed() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert loop.is_closed() and "closing a client" in handler.stream.getvalue()
    logger.removeHandler(handler)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_forked_child_leaves_the_parents_loops_awake(scenario: str) -> None:
    """The scenarios of `fork_scenarios.py`, each in a fresh interpreter: a fork from this
    test process would copy the loops of every earlier test (Prefect's among them) into
    the child, and a child that collects garbage could leave one of them deaf here."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("fork_scenarios.py")), scenario],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith(f"{scenario}: ok"), done.stdout


def test_a_sync_call_inside_a_running_loop_keeps_the_callers_context() -> None:
    """An async flow calling a sync twin: the helper thread sees the caller's Prefect run."""
    run = contextvars.ContextVar[str]("run", default="none")

    async def which_run() -> str:
        return run.get()

    async def caller() -> str:
        run.set("the caller's")
        return run_sync(which_run())  # a loop is running here: the helper thread runs it

    assert asyncio.run(caller()) == "the caller's"


def test_a_loop_keeps_a_bounded_number_of_clients() -> None:
    cache: ClientCache[openai.AsyncOpenAI] = ClientCache(per_loop=2)

    def build() -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key="sk-x", base_url="http://127.0.0.1:9/v1")

    async def three() -> list[openai.AsyncOpenAI]:
        clients = [cache.get(n, build) for n in range(3)]
        await asyncio.sleep(0)  # the evicted client's close runs
        return clients

    oldest, *rest = asyncio.run(three())
    assert oldest.is_closed() and all(c.is_closed() for c in rest)  # the rest at shutdown
    assert CLIENTS is not cache and cache.loops() == 0


def test_two_runs_in_one_process_count_their_own_circuit_trips() -> None:
    clear_resilience()
    events.install_circuit_events()
    model = _model().model_copy(update={"circuit": Circuit(failures=2)})

    def run(trips_of: dict[str, int], name: str, open_one: bool) -> None:
        counter = events.count_trips()
        if open_one:
            guard: CircuitGuard = RUNNERS.build(model).protection.guard  # type: ignore[assignment]
            for _ in range(2):
                guard.record_failure(guard.before_call(), ConnectionError("refused"))
        trips_of[name] = counter.stop()

    trips: dict[str, int] = {}
    runs = [
        threading.Thread(target=contextvars.copy_context().run, args=(run, trips, n, n == "a"))
        for n in ("a", "b")
    ]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join()
    assert trips == {"a": 1, "b": 0}
    clear_resilience()


def test_assembling_a_call_hashes_the_key_once(monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[str] = []
    real = credentials_module._fingerprint

    def counting(secret: str | None) -> str:
        hashed.append("x")
        return real(secret)

    monkeypatch.setattr(credentials_module, "_fingerprint", counting)
    monkeypatch.setattr(chat_model_module, "hashlib", types.SimpleNamespace(sha256=_forbidden))

    async def one_call_assembled() -> None:
        _, runner = await RUNNERS.assemble(_model())
        runner.sender.client()
        runner.sender.client()

    asyncio.run(one_call_assembled())
    assert len(hashed) == 1  # the client's key and the limiter's key share one fingerprint


def _forbidden(*args: object) -> None:
    raise AssertionError("the limiter's key hashed the secret again")
