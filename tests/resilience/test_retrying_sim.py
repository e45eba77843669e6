"""Every row of the error table over real HTTP: a real AsyncOpenAI client (SDK retries off)
against the simulator. For each: the attempts the server saw, the delays slept, and what
the caller gets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import openai
import pytest
from resilience_helpers import FakeClock, RecordingSleep

from prefect_openai_chat.errors import (
    CircuitOpenError,
    CredentialsRejectedError,
    IncompleteStreamError,
    InsufficientQuotaError,
    RateLimitPatienceError,
)
from prefect_openai_chat.resilience import (
    Action,
    CircuitGuard,
    RetryBudget,
    RetryPolicy,
    call_with_retries,
    make_retry_condition,
)
from prefect_openai_chat.simulator import Simulator

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say hi."}]
# outage_patience_s=0: an open circuit fails at once (waiting is tested on its own)
POLICY = RetryPolicy(
    max_attempts=4, backoff_base=0.5, backoff_cap=20.0, outage_patience_s=0.0, task_retries=2
)


@pytest.fixture(scope="module")
def server() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=1, extra_models={"tiny-window": 64}) as simulator:
        yield simulator


@pytest.fixture
def sim(server: Simulator) -> Simulator:
    server.reset()
    server.configure(script=[], fault_rates={})
    return server


def client_for(sim: Simulator, **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0, **options)


def completion(
    client: openai.AsyncOpenAI, fault: str | None = None, **params: Any
) -> Callable[[int], Awaitable[Any]]:
    headers = {"x-simulator-fault": fault} if fault else {}
    args: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "max_tokens": 5, **params}

    async def attempt(n: int) -> Any:
        return await client.chat.completions.create(**args, extra_headers=headers)

    return attempt


def streamed(client: openai.AsyncOpenAI, fault: str) -> Callable[[int], Awaitable[str]]:
    """One streamed call; a stream without a finish reason is an IncompleteStreamError."""

    async def attempt(n: int) -> str:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            max_tokens=5,
            stream=True,
            extra_headers={"x-simulator-fault": fault},
        )
        text, finish = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
        if finish is None:
            raise IncompleteStreamError("the stream ended without a finish reason")
        return text

    return attempt


def assert_backoff(delays: list[float], policy: RetryPolicy = POLICY) -> None:
    for i, delay in enumerate(delays):
        assert 0.0 <= delay <= min(policy.backoff_cap, policy.backoff_base * 2**i)


# fault header, exception class the caller gets, HTTP attempts the server sees
OUTAGE_ROWS = [
    ("503", openai.InternalServerError),
    ("500", openai.InternalServerError),
    ("502", openai.InternalServerError),
    ("502-html", openai.InternalServerError),
    ("408", openai.APIStatusError),
    ("409", openai.ConflictError),
    ("reset", openai.APIConnectionError),
]


@pytest.mark.parametrize(("fault", "error"), OUTAGE_ROWS, ids=[r[0] for r in OUTAGE_ROWS])
async def test_outage_rows_retry_with_backoff_then_raise_the_original(
    sim: Simulator, recording_sleep: RecordingSleep, fault: str, error: type[Exception]
) -> None:
    async with client_for(sim) as client:
        with pytest.raises(error) as info:
            await call_with_retries(
                completion(client, fault), policy=POLICY, key="k", sleep=recording_sleep
            )
    assert sim.stats().requests == 4
    assert sim.stats().by_fault == {fault: 4}
    assert len(recording_sleep.delays) == 3
    assert_backoff(recording_sleep.delays)
    verdict = POLICY.classify(info.value)
    assert verdict.task_retry and verdict.outage


async def test_timeout_is_retried(sim: Simulator, recording_sleep: RecordingSleep) -> None:
    async with client_for(sim, timeout=openai.Timeout(0.2, connect=1.0)) as client:
        with pytest.raises(openai.APITimeoutError):
            await call_with_retries(
                completion(client, "hang"), policy=POLICY, key="k", sleep=recording_sleep
            )
    assert sim.stats().by_fault == {"hang": 4} and len(recording_sleep.delays) == 3


async def test_rate_limit_waits_what_the_server_says_within_the_patience(sim: Simulator) -> None:
    clock = FakeClock()
    sleep = RecordingSleep(clock)
    sim.configure(retry_after_s=2.5)
    policy = POLICY.model_copy(update={"rate_limit_patience_s": 6.0})
    async with client_for(sim) as client:
        with pytest.raises(RateLimitPatienceError, match=r"after 5.0 s of waiting over 3") as info:
            await call_with_retries(
                completion(client, "429"), policy=policy, key="k", sleep=sleep, clock=clock
            )
    assert sim.stats().by_status == {429: 3}
    assert sleep.delays == [2.5, 2.5]  # the third wait would end past the patience
    assert "retry-after=3" in str(info.value) and "rate_limit_patience_s" in str(info.value)
    assert isinstance(info.value.__cause__, openai.RateLimitError)
    assert not POLICY.classify(info.value).task_retry


async def test_rate_limits_are_pacing_not_failures(sim: Simulator) -> None:
    """429s count neither against max_attempts nor the retry budget."""
    clock = FakeClock()
    sleep = RecordingSleep(clock)
    sim.configure(retry_after_s=1.0, script=["429"] * 6)
    policy = POLICY.model_copy(update={"max_attempts": 2})
    budget = RetryBudget(ratio=0.0, min_retries_per_window=0)  # no retries to spend at all
    async with client_for(sim) as client:
        result, attempts = await call_with_retries(
            completion(client), policy=policy, key="k", sleep=sleep, clock=clock, budget=budget
        )
    assert result.choices[0].finish_reason in ("stop", "length") and attempts == 7
    assert sim.stats().by_status == {429: 6, 200: 1}
    assert sleep.delays == [1.0] * 6


async def test_a_wait_past_the_patience_fails_at_once(
    sim: Simulator, recording_sleep: RecordingSleep
) -> None:
    sim.configure(retry_after_s=999999.0)
    async with client_for(sim) as client:
        with pytest.raises(RateLimitPatienceError, match=r"asks for 999999\.0 s more"):
            await call_with_retries(
                completion(client, "429"), policy=POLICY, key="k", sleep=recording_sleep
            )
    assert recording_sleep.delays == [] and sim.stats().by_status == {429: 1}


async def test_quota_is_never_retried(sim: Simulator, recording_sleep: RecordingSleep) -> None:
    async with client_for(sim) as client:
        with pytest.raises(InsufficientQuotaError, match="out of quota") as info:
            await call_with_retries(
                completion(client, "quota"), policy=POLICY, key="k", sleep=recording_sleep
            )
    assert sim.stats().requests == 1 and recording_sleep.delays == []
    assert isinstance(info.value.__cause__, openai.RateLimitError)
    assert not POLICY.classify(info.value).task_retry


@pytest.mark.parametrize("fault", ["stream-error", "cut"])
async def test_interrupted_streams_retry_the_whole_call(
    sim: Simulator, recording_sleep: RecordingSleep, fault: str
) -> None:
    async with client_for(sim) as client:
        with pytest.raises((openai.APIError, IncompleteStreamError)) as info:
            await call_with_retries(
                streamed(client, fault), policy=POLICY, key="k", sleep=recording_sleep
            )
    assert sim.stats().requests == 4 and len(recording_sleep.delays) == 3
    assert POLICY.classify(info.value).outage


async def test_stalled_stream_is_retried(sim: Simulator, recording_sleep: RecordingSleep) -> None:
    sim.configure(stall_s=5.0)
    async with client_for(sim, timeout=openai.Timeout(0.3, connect=1.0)) as client:
        with pytest.raises(openai.APIConnectionError):
            await call_with_retries(
                streamed(client, "stall"),
                policy=RetryPolicy(max_attempts=2),
                key="k",
                sleep=recording_sleep,
            )
    assert sim.stats().requests == 2 and len(recording_sleep.delays) == 1


async def test_context_overflow_goes_to_the_context_strategy(
    sim: Simulator, recording_sleep: RecordingSleep
) -> None:
    for error_format in ("openai", "vllm", "ollama"):
        sim.configure(error_format=error_format)
        async with client_for(sim) as client:
            with pytest.raises(openai.BadRequestError) as info:
                await call_with_retries(
                    completion(client, model="tiny-window", max_tokens=60),
                    policy=POLICY,
                    key="k",
                    sleep=recording_sleep,
                )
        assert POLICY.classify(info.value).action is Action.CONTEXT, error_format
    assert sim.stats().requests == 3 and recording_sleep.delays == []


@pytest.mark.parametrize(
    ("params", "status"),
    [({"temperature": 7.0}, 400), ({"model": "no-such-model"}, 404)],
)
async def test_client_errors_fail_at_once(
    sim: Simulator, recording_sleep: RecordingSleep, params: dict[str, Any], status: int
) -> None:
    async with client_for(sim) as client:
        with pytest.raises(openai.APIStatusError) as info:
            await call_with_retries(
                completion(client, **params), policy=POLICY, key="k", sleep=recording_sleep
            )
    assert info.value.status_code == status
    assert sim.stats().requests == 1 and recording_sleep.delays == []


async def test_401_reloads_the_key_once(sim: Simulator, recording_sleep: RecordingSleep) -> None:
    client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="sk-old-rotated", max_retries=0)

    async def attempt(n: int) -> Any:
        return await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)

    async def reload() -> bool:  # the block was saved anew with the rotated key
        nonlocal client
        client = client.with_options(api_key=sim.api_key)
        return True

    result, attempts = await call_with_retries(
        attempt, policy=POLICY, key="k", sleep=recording_sleep, reload_credentials=reload
    )
    assert attempts == 2 and result.choices[0].message.content
    assert sim.stats().by_status == {401: 1, 200: 1}


async def test_401_with_no_new_key_fails_without_showing_it(
    sim: Simulator, recording_sleep: RecordingSleep
) -> None:
    async def unchanged() -> bool:
        return False

    async with openai.AsyncOpenAI(
        base_url=sim.base_url, api_key="sk-wrong-key-1234", max_retries=0
    ) as client:
        with pytest.raises(CredentialsRejectedError) as info:
            await call_with_retries(
                completion(client),
                policy=POLICY,
                key="k",
                sleep=recording_sleep,
                reload_credentials=unchanged,
            )
    assert "sk-wrong" not in str(info.value) and "1234" not in str(info.value)
    assert sim.stats().requests == 1


async def test_transient_errors_then_success(
    sim: Simulator, recording_sleep: RecordingSleep
) -> None:
    sim.configure(script=["503", "reset", "ok"])
    async with client_for(sim) as client:
        _, attempts = await call_with_retries(
            completion(client), policy=POLICY, key="k", sleep=recording_sleep
        )
    assert attempts == 3 and sim.stats().requests == 3 and len(recording_sleep.delays) == 2


async def test_open_circuit_sends_nothing(
    sim: Simulator, recording_sleep: RecordingSleep, clock: FakeClock, unique_key: str
) -> None:
    guard = CircuitGuard(unique_key, fail_max=3, reset_timeout_s=30.0, clock=clock)
    async with client_for(sim) as client:
        with pytest.raises(CircuitOpenError):
            await call_with_retries(
                completion(client, "503"),
                policy=POLICY,
                key=unique_key,
                guard=guard,
                sleep=recording_sleep,
            )
        assert sim.stats().requests == 3  # the 4th attempt met the open circuit
        for _ in range(20):
            with pytest.raises(CircuitOpenError):
                await call_with_retries(
                    completion(client),
                    policy=POLICY,
                    key=unique_key,
                    guard=guard,
                    sleep=recording_sleep,
                )
        assert sim.stats().requests == 3
        clock.advance(30.0)  # the probe goes through and closes the circuit
        _, attempts = await call_with_retries(
            completion(client), policy=POLICY, key=unique_key, guard=guard, sleep=recording_sleep
        )
    assert attempts == 1 and guard.state == "closed" and sim.stats().requests == 4


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.data = exc


async def test_total_attempts_are_bounded_across_both_tiers(
    sim: Simulator, recording_sleep: RecordingSleep
) -> None:
    """A 100%-failing server: the task tier re-runs the call as Prefect would."""
    sim.configure(fault_rates={"503": 1.0})
    condition = make_retry_condition(POLICY)
    runs = 0
    async with client_for(sim) as client:
        for _ in range(POLICY.task_retries + 1):
            runs += 1
            try:
                await call_with_retries(
                    completion(client), policy=POLICY, key="k", sleep=recording_sleep
                )
            except Exception as exc:
                if not condition(None, None, _Failed(exc)):
                    break
    assert runs == 3
    assert sim.stats().requests == POLICY.max_total_attempts == 12
