"""Issue 24, item 3: a fallback that cannot work is visible. When the primary is down and the
fallback fails too (an Azure block saved without a credential, as the tour once did), the
exception's own message, and so the Prefect task's state message, names the fallback and
its error. And a fallback that fails does not make the primary less patient: its open
circuit is then waited out within the outage patience, as if there were no fallback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import openai
import pytest
from defect_support import MESSAGES, MODEL, fault, run_task, sim_model
from registry_support import clear_resilience
from timing_support import FakeClock, RecordingSleep

from prefect_openai_chat import AzureOpenAICredentials, ChatModel, chat_completion
from prefect_openai_chat.blocks.assembly import RUNNERS
from prefect_openai_chat.chat import ChatRunner
from prefect_openai_chat.chat.protection import Protection
from prefect_openai_chat.errors import CircuitOpenError
from prefect_openai_chat.resilience import CircuitGuard, RetryPolicy, circuit_key
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.simulator.settings import OutageWindow

CHAT = chat_completion.with_options(retry_delay_seconds=0)


@pytest.fixture(autouse=True)
def _harness(prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    clear_resilience()


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=24) as simulator:
        yield simulator


def keyless_azure_model(sim: Simulator) -> ChatModel:
    """An Azure ChatModel without any credential."""
    credentials = AzureOpenAICredentials(azure_endpoint=sim.base_url, azure_deployment=MODEL)
    return ChatModel(credentials=credentials, model=MODEL)


def keyless_azure_fallback(sim: Simulator) -> str:
    """Save `keyless_azure_model`; return its name."""
    name = f"azure-no-key-{uuid.uuid4().hex[:8]}"
    keyless_azure_model(sim).save(name)
    return name


def test_the_fallbacks_failure_is_in_the_task_state_message(sim: Simulator) -> None:
    sim.reset()
    fallback = keyless_azure_fallback(sim)
    primary = sim_model(
        sim, max_attempts=1, task_retries=0, circuit_failures=1, fallback_models=[fallback]
    )
    failed_too = f"fallback {fallback!r} failed too: InvalidInputError('no Azure OpenAI credential"

    # The primary answers 503 (and its circuit opens): the 503 names the fallback's failure.
    message, error = run_task(CHAT, primary, MESSAGES, **fault("503"))
    assert isinstance(error, openai.InternalServerError), repr(error)
    assert failed_too in str(error) and failed_too in message

    # The circuit is open now: the call fails at once, and says why no fallback answered.
    message, error = run_task(CHAT, primary, MESSAGES)
    assert isinstance(error, CircuitOpenError), repr(error)
    assert failed_too in str(error) and failed_too in message
    assert message.startswith("Task run encountered an exception CircuitOpenError: circuit ")
    assert sim.stats().requests == 1  # only the first 503: the fallback never sent anything


async def test_a_failing_fallback_leaves_the_primary_its_outage_patience(sim: Simulator) -> None:
    """The second call meets the open circuit; the fallback fails; the call then waits for
    the probe (on a clock the test moves) and the primary answers."""
    sim.configure(outages=[OutageWindow(from_request=0, to_request=1)])  # one 503, then up
    sim.reset()
    settings = sim_model(sim).chat_settings()
    clock = FakeClock()
    sleep = RecordingSleep(clock)
    key = circuit_key(settings.base_url, settings.model)
    guard = CircuitGuard(key, fail_max=1, reset_timeout_s=30.0, clock=clock)
    policy = RetryPolicy(max_attempts=1, backoff_base=0.0, outage_patience_s=60.0)
    azure = RUNNERS.build(keyless_azure_model(sim), name="azure-no-key")
    client = openai.AsyncOpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)
    runner = ChatRunner(
        settings,
        lambda: client,
        protection=Protection(policy=policy, guard=guard),
        fallbacks=[azure],
        sleep=sleep,
    )
    try:
        with pytest.raises(openai.InternalServerError, match="'azure-no-key' failed too"):
            await runner.complete(MESSAGES)  # the 503 opens the circuit
        assert guard.state == "open"
        result = await runner.complete(MESSAGES)  # meets it open: waits for the probe
    finally:
        sim.configure(outages=[])
        await client.close()
    assert result.answered_by == "primary" and result.content
    assert 30.0 <= sum(sleep.delays) < 60.0  # the reset timeout, within the outage patience
    assert sim.stats().by_status == {503: 1, 200: 1}
