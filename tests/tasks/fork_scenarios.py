"""Forked children and the sync layer's event loops, one scenario per run of this script.

`python tests/tasks/fork_scenarios.py "thread loops"` prints `thread loops: ok` and exits
0, or fails. tests/tasks/test_assembly.py runs each in a fresh interpreter, so that the
fork copies only the loops of the scenario.

A forked child shares each inherited loop's epoll instance and self-pipe with the
parent. In the child the parent's thread loops are garbage (their threads are gone), and
an unclosed loop's `__del__` closes it: unregistering the self-pipe from the shared
epoll instance, after which the parent's loop never hears a result from another thread.
Every child here collects garbage on purpose (`gc.collect()`), which made the parent
wait forever before `_sync._ProcessLoop`.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from prefect_openai_chat._sync import LoopThread, run_sync


async def answer_from_another_thread() -> int:
    """42, from the loop's executor: the loop hears of it through its self-pipe."""
    return await asyncio.get_running_loop().run_in_executor(None, lambda: 42)


def exit_code_of_forked(target: Callable[[], object]) -> int | None:
    """Run `target` in a forked child; its exit code (None: killed after 30 s)."""
    process = multiprocessing.get_context("fork").Process(target=target)
    process.start()
    process.join(30)
    if process.exitcode is None:
        process.kill()
        return None
    return process.exitcode


def thread_loops() -> None:
    """A child that only collects garbage: the parent's thread loop still wakes."""
    with ThreadPoolExecutor(1) as thread:  # a thread whose sync calls keep one loop
        assert thread.submit(run_sync, answer_from_another_thread()).result(10) == 42
        assert exit_code_of_forked(gc.collect) == 0
        assert thread.submit(run_sync, answer_from_another_thread()).result(10) == 42


def sync_calls_in_the_child() -> None:
    """The child's sync calls (plain, and inside a running loop) run on loops of its own."""

    async def inside_a_running_loop() -> int:
        return run_sync(answer_from_another_thread())  # the helper thread's path

    def both() -> int:
        return run_sync(answer_from_another_thread()) + asyncio.run(inside_a_running_loop())

    def child() -> None:
        gc.collect()
        os._exit(0 if both() == 84 else 1)

    assert both() == 84  # the parent has a loop of its own and helper threads to pass on
    assert exit_code_of_forked(child) == 0, "the child's sync calls did not finish"
    assert both() == 84


def loop_thread() -> None:
    """A child that runs, closes and drops the parent's `LoopThread`: the parent's wakes."""
    loop = LoopThread("fork-test")
    try:
        assert loop.run(answer_from_another_thread()) == 42

        def child() -> None:
            answer = loop.run(answer_from_another_thread())  # on a loop of the child's
            loop.close()
            gc.collect()
            os._exit(0 if answer == 42 else 1)

        exit_code = exit_code_of_forked(child)
        assert exit_code == 0, "the child's call on the parent's LoopThread did not finish"
        with ThreadPoolExecutor(1) as thread:  # a call from another thread wakes the loop
            assert thread.submit(loop.run, answer_from_another_thread()).result(10) == 42
    finally:
        loop.close()


SCENARIOS = {
    "thread loops": thread_loops,
    "sync calls in the child": sync_calls_in_the_child,
    "loop thread": loop_thread,
}

if __name__ == "__main__":
    name = sys.argv[1]
    SCENARIOS[name]()
    print(f"{name}: ok", flush=True)
    os._exit(0)  # a loop left deaf would hold the executor's threads at exit
