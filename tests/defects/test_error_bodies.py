"""Issue #10, defects 4 and 5: the server's own words reach the error whatever its body's
shape, and Azure's prompt filter is a `ContentFilteredError` with its categories (or a
flagged result), never retried."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from defect_support import MESSAGES, fault, run_task, sim_model
from registry_support import clear_resilience

from prefect_openai_chat import ChatResult, chat_completion, stream_chat_completion
from prefect_openai_chat.errors import ContentFilteredError
from prefect_openai_chat.resilience import RetryPolicy
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.simulator.errors import DETAIL_400, OLLAMA_404, PLAIN_400

CHAT = chat_completion.with_options(retry_delay_seconds=0)
STREAM = stream_chat_completion.with_options(retry_delay_seconds=0)


@pytest.fixture(autouse=True)
def _harness(prefect_harness: None) -> None:
    clear_resilience()


@pytest.fixture(scope="module")
def server() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=8) as simulator:
        yield simulator


@pytest.fixture
def sim(server: Simulator) -> Simulator:
    server.reset()
    return server


@pytest.mark.parametrize(
    ("name", "kind", "words"),
    [
        ("ollama-404", openai.NotFoundError, OLLAMA_404),
        ("detail-error", openai.BadRequestError, DETAIL_400),
        ("plain-error", openai.BadRequestError, PLAIN_400),
        ("502-html", openai.InternalServerError, "502 Bad Gateway"),
    ],
)
def test_the_servers_words_are_in_the_error(
    sim: Simulator, name: str, kind: type[Exception], words: str
) -> None:
    message, error = run_task(CHAT, sim_model(sim, max_attempts=1), MESSAGES, **fault(name))
    assert isinstance(error, kind), repr(error)
    assert words in str(error)
    assert words in message  # the Prefect state message too


@pytest.mark.parametrize("task", [CHAT, STREAM], ids=["chat", "stream"])
def test_azure_prompt_filter_is_content_filtered_with_categories(
    sim: Simulator, task: object
) -> None:
    model = sim_model(sim, max_attempts=3, task_retries=2)
    _, error = run_task(task, model, MESSAGES, **fault("azure-filter"))
    assert isinstance(error, ContentFilteredError), repr(error)
    assert error.categories["hate"] == {"filtered": True, "severity": "high"}
    assert error.categories["violence"]["filtered"] is True
    assert "hate (high)" in str(error) and "violence (medium)" in str(error)
    assert "self_harm" not in str(error)
    assert sim.stats().requests == 1  # never retried, in neither tier
    assert not RetryPolicy().classify(error).task_retry


def test_azure_prompt_filter_flagged(sim: Simulator) -> None:
    model = sim_model(sim, content_filter="flag", safe_message="withheld")
    _, result = run_task(CHAT, model, MESSAGES, **fault("azure-filter"))
    assert isinstance(result, ChatResult), repr(result)
    assert result.flagged and result.content == "withheld"
    assert result.finish_reason == "content_filter" and result.request_id
    assert sim.stats().requests == 1
