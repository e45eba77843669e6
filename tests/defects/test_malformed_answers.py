"""Issue #10, defect 1: a 200 that is not a chat completion is a typed, retried error that
names the endpoint and the request; an empty answer and a stream without `[DONE]` are
answers. Through the simulator over real HTTP, with the real client, in real flows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from defect_support import MESSAGES, MODEL, fault, run_task, sim_model
from registry_support import clear_resilience

from prefect_openai_chat import ChatResult, chat_completion, stream_chat_completion
from prefect_openai_chat.errors import IncompleteStreamError, MalformedResponseError
from prefect_openai_chat.resilience import Action, RetryPolicy
from prefect_openai_chat.simulator import Simulator

CHAT = chat_completion.with_options(retry_delay_seconds=0)
STREAM = stream_chat_completion.with_options(retry_delay_seconds=0)
MALFORMED = ["empty-object", "no-choices", "invalid-json", "text-plain"]


@pytest.fixture(autouse=True)
def _harness(prefect_harness: None) -> None:
    clear_resilience()


@pytest.fixture(scope="module")
def server() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=3) as simulator:
        yield simulator


@pytest.fixture
def sim(server: Simulator) -> Simulator:
    server.configure(script=[])
    server.reset()
    return server


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_200_is_a_typed_retried_error_naming_endpoint_and_request(
    sim: Simulator, name: str
) -> None:
    model = sim_model(sim, max_attempts=2, task_retries=1)
    message, error = run_task(CHAT, model, MESSAGES, **fault(name))
    assert isinstance(error, MalformedResponseError), repr(error)
    text = str(error)
    assert sim.base_url.rstrip("/") in text and MODEL in text
    assert "request req_" in text
    assert "200" in text
    verdict = RetryPolicy().classify(error)
    assert verdict.action is Action.RETRY and verdict.task_retry and verdict.outage
    assert sim.stats().requests == 4  # retried in both tiers: 2 attempts x 2 task runs
    assert "MalformedResponseError" in message


@pytest.mark.parametrize("name", MALFORMED)
def test_one_malformed_answer_is_retried_into_an_answer(sim: Simulator, name: str) -> None:
    sim.configure(script=[name])
    sim.reset()
    _, result = run_task(CHAT, sim_model(sim, max_attempts=2, task_retries=0), MESSAGES)
    assert isinstance(result, ChatResult), repr(result)
    assert result.content and result.finish_reason == "stop"
    assert result.http_attempts == 2 and sim.stats().requests == 2


@pytest.mark.parametrize("task", [CHAT, STREAM], ids=["chat", "stream"])
def test_null_content_with_stop_is_an_empty_answer(sim: Simulator, task: object) -> None:
    _, result = run_task(task, sim_model(sim, max_attempts=1), MESSAGES, **fault("null-content"))
    assert isinstance(result, ChatResult), repr(result)
    assert result.content == "" and result.finish_reason == "stop"
    assert result.tool_calls == [] and result.refusal is None


def test_a_stream_without_done_is_an_answer(sim: Simulator) -> None:
    model = sim_model(sim, max_attempts=1)
    _, with_done = run_task(STREAM, model, MESSAGES)
    _, without_done = run_task(STREAM, model, MESSAGES, **fault("no-done"))
    assert isinstance(without_done, ChatResult), repr(without_done)
    assert without_done.content == with_done.content and without_done.finish_reason == "stop"
    assert without_done.usage == with_done.usage


def test_a_stream_with_no_completion_in_it_is_retried_and_names_the_endpoint(
    sim: Simulator,
) -> None:
    _, error = run_task(STREAM, sim_model(sim, max_attempts=2), MESSAGES, **fault("text-plain"))
    assert isinstance(error, IncompleteStreamError), repr(error)
    assert sim.base_url.rstrip("/") in str(error) and MODEL in str(error)
    assert RetryPolicy().classify(error).action is Action.RETRY
