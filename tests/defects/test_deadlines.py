"""Issue #10, defect 3: a server trickling one byte a second resets the read timeout with
every byte; the attempt deadline ends each attempt (a retried timeout) and the call
deadline ends the whole call, for chat_completion, its stream twin and extract."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from defect_support import MESSAGES, MODEL, fault, run_task, sim_model
from pydantic import BaseModel
from registry_support import clear_resilience

from prefect_openai_chat import ChatModel, chat_completion, extract, stream_chat_completion
from prefect_openai_chat.errors import AttemptTimeoutError, CallTimeoutError
from prefect_openai_chat.resilience import Action, RetryPolicy
from prefect_openai_chat.simulator import Simulator

CHAT = chat_completion.with_options(retry_delay_seconds=0)
STREAM = stream_chat_completion.with_options(retry_delay_seconds=0)
EXTRACT = extract.with_options(retry_delay_seconds=0)


class Greeting(BaseModel):
    text: str


@pytest.fixture(autouse=True)
def _harness(prefect_harness: None) -> None:
    clear_resilience()


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=9, hang_s=60.0) as simulator:
        yield simulator


@pytest.mark.parametrize("task", [CHAT, STREAM], ids=["chat", "stream"])
def test_each_attempt_ends_at_its_deadline_and_is_retried(sim: Simulator, task: object) -> None:
    sim.reset()
    model = sim_model(
        sim, read_timeout_s=10.0, attempt_timeout_s=1.5, max_attempts=2, task_retries=0
    )
    started = time.monotonic()
    _, error = run_task(task, model, MESSAGES, **fault("trickle"))
    elapsed = time.monotonic() - started
    assert isinstance(error, AttemptTimeoutError), repr(error)
    assert sim.stats().requests == 2  # retried once, as a timeout
    # two 1.5 s attempts; without the deadline each would last the trickle's 60 s (every
    # byte resets the 10 s read timeout): the bound is generous for a busy machine
    assert 3.0 <= elapsed < 20.0
    assert "attempt_timeout_s=1.5" in str(error) and MODEL in str(error)
    assert RetryPolicy().classify(error).action is Action.RETRY


def test_the_call_deadline_ends_the_whole_call(sim: Simulator) -> None:
    sim.reset()
    model = sim_model(sim, read_timeout_s=10.0, call_timeout_s=2.5, max_attempts=20)
    started = time.monotonic()
    _, error = run_task(CHAT, model, MESSAGES, **fault("trickle"))
    elapsed = time.monotonic() - started
    assert isinstance(error, CallTimeoutError), repr(error)
    # not the trickle's 60 s, nor the default 22 s attempt deadline (generous for a busy machine)
    assert 2.5 <= elapsed < 20.0
    assert "call_timeout_s=2.5" in str(error) and sim.base_url.rstrip("/") in str(error)
    assert not RetryPolicy().classify(error).task_retry  # the bound is the bound


def test_extract_ends_within_the_call_deadline(sim: Simulator) -> None:
    sim.configure(fault_rates={"trickle": 1.0})
    sim.reset()
    try:
        model = sim_model(sim, read_timeout_s=10.0, call_timeout_s=2.0, task_retries=0)
        started = time.monotonic()
        message, outcome = run_task(EXTRACT, model, Greeting, "Say hi to Ada.")
        elapsed = time.monotonic() - started
    finally:
        sim.configure(fault_rates={})
    assert elapsed < 20.0  # not the trickle's 60 s, nor the default 22 s attempt deadline
    assert "call_timeout_s=2" in (repr(outcome) + message)


def test_default_deadlines_follow_the_read_timeout() -> None:
    model = ChatModel(model=MODEL, timeouts={"read_s": 10.0, "connect_s": 2.0})
    settings = model.chat_settings()
    assert settings.attempt_timeout_s == 22.0  # 2 x read + connect
    assert settings.call_timeout_s == 600.0
    model = ChatModel(model=MODEL, timeouts={"attempt_s": 7.0})
    assert model.chat_settings().attempt_timeout_s == 7.0
