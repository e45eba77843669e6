"""Assembling a call: one factory, one client cache, clients closed with their loops,
circuit trips counted per run."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import types

import openai
import pytest
from resilience_support import clear_resilience

from prefect_openai_chat import ChatModel, OpenAICredentials
from prefect_openai_chat._sync import run_sync
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
        return runner._client(), runner._client(), model.get_client(async_client=True)

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
    assert made[0].is_closed()  # the thread ended: its loop shut down and closed the client


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
    model = _model().model_copy(update={"circuit_failures": 2})

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
        runner._client()
        runner._client()

    asyncio.run(one_call_assembled())
    assert len(hashed) == 1  # the client's key and the limiter's key share one fingerprint


def _forbidden(*args: object) -> None:
    raise AssertionError("the limiter's key hashed the secret again")
