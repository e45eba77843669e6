"""`LoopThread` and `shared_loop`: the sync chunks of one run on one event loop."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from prefect_openai_chat._sync import LoopThread
from prefect_openai_chat.tasks.run_sharing import _loops, shared_loop

WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def test_calls_from_many_threads_run_on_the_one_loop_in_their_callers_context() -> None:
    loop = LoopThread("test")
    seen: dict[str, tuple[str, asyncio.AbstractEventLoop]] = {}

    async def where() -> tuple[str, asyncio.AbstractEventLoop]:
        await asyncio.sleep(0.01)
        return WHO.get(), asyncio.get_running_loop()

    def caller(name: str) -> None:
        WHO.set(name)
        seen[name] = loop.run(where())

    threads = [threading.Thread(target=caller, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    loop.close()
    assert {name: who for name, (who, _) in seen.items()} == {f"t{i}": f"t{i}" for i in range(4)}
    assert {id(running) for _, running in seen.values()} == {id(loop.loop)}
    assert loop.loop.is_closed()


def test_an_error_reaches_the_caller_and_close_waits_for_running_calls() -> None:
    loop = LoopThread("test")

    async def fail() -> None:
        raise ValueError("this record's own fault")

    with pytest.raises(ValueError, match="own fault"):
        loop.run(fail())
    finished: list[str] = []

    async def slow() -> str:
        await asyncio.sleep(0.2)
        finished.append("slow")
        return "done"

    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(loop.run(slow())))
    thread.start()
    while not asyncio.all_tasks(loop.loop):  # the call is under way
        threading.Event().wait(0.01)
    loop.close()  # waits for it
    thread.join()
    assert finished == ["slow"] and result == ["done"]


def test_shared_loop_is_registered_for_its_pool_while_the_block_runs() -> None:
    with shared_loop("test-pool"):
        held = _loops["test-pool"]
        assert held.run(asyncio.sleep(0, result=3)) == 3
    assert "test-pool" not in _loops and held.loop.is_closed()
