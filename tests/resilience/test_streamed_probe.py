"""The limiter's probe is streamed: the limits arrive with the first byte, not the whole answer.

Real HTTP to the simulator through the real `openai` client: the first call of a runner
with a learning limiter goes streamed and alone; the calls waiting for it start once its
headers arrive, long before its answer has been written; every answer is read the same
way; a server that refuses streams gets the probe again plainly, within the same call.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import openai

from prefect_openai_chat.chat import ChatRunner, ChatSettings
from prefect_openai_chat.chat.protection import Protection
from prefect_openai_chat.resilience import AdaptiveConcurrency, RateLimiter
from prefect_openai_chat.results import ChatResult
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.simulator.request_log import read_request_log

TTFT_S = 1.0  # each answer's first token comes this long after its request


def _runner(sim: Simulator, limiter: RateLimiter | None) -> tuple[ChatRunner, Any]:
    client = openai.AsyncOpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)
    protection = Protection(limiter=limiter, gate=AdaptiveConcurrency(8))
    return ChatRunner(
        ChatSettings(model="gpt-4o-mini"), lambda: client, protection=protection
    ), client


async def _ask(runner: ChatRunner, count: int) -> list[ChatResult]:
    calls = [
        runner.complete([{"role": "user", "content": f"Say hi to record R-{n}."}], max_tokens=50)
        for n in range(count)
    ]
    return list(await asyncio.gather(*calls))


def _streamed(entry: dict[str, Any]) -> bool:
    return bool(json.loads(entry["body"]).get("stream"))


async def test_the_probe_is_streamed_and_the_others_start_at_its_first_byte(
    tmp_path: Path,
) -> None:
    log = tmp_path / "requests.jsonl"
    limits = {"rpm": 600, "time_scale": 60.0, "ttft_s": TTFT_S, "request_log": str(log)}
    with Simulator(profile="ideal", seed=4, **limits) as sim:
        runner, client = _runner(sim, RateLimiter())
        results = await _ask(runner, 6)
        await client.close()
        entries = read_request_log(log)

    assert [_streamed(e) for e in entries] == [True] + [False] * 5
    assert [e["status"] for e in entries] == [200] * 6
    # The others waited for the probe's headers only: without the stream they would have
    # waited for its whole answer (TTFT_S).
    assert entries[1]["t"] - entries[0]["t"] < TTFT_S / 2
    for result in results:  # the streamed answer reads as the plain ones do
        assert result.finish_reason == "stop" and result.content
        assert result.usage.prompt_tokens > 0 and result.request_id
    assert results[0].time_to_first_token_s is not None
    assert all(r.time_to_first_token_s is None for r in results[1:])


async def test_a_server_that_refuses_streams_gets_the_probe_plainly_and_no_stream_again(
    tmp_path: Path,
) -> None:
    log = tmp_path / "requests.jsonl"
    with Simulator(profile="ideal", seed=4, refuse_streams=True, request_log=str(log)) as sim:
        limiter = RateLimiter()
        runner, client = _runner(sim, limiter)
        first = await _ask(runner, 3)
        limiter_again = RateLimiter()  # a new night's limiter probes again: plainly now
        runner.protection = Protection(limiter=limiter_again, gate=AdaptiveConcurrency(8))
        second = await _ask(runner, 2)
        await client.close()
        entries = read_request_log(log)

    assert [(_streamed(e), e["status"]) for e in entries] == [(True, 400)] + [(False, 200)] * 5
    assert json.loads(entries[0]["body"])["messages"] == json.loads(entries[1]["body"])["messages"]
    assert all(r.finish_reason == "stop" and r.content for r in first + second)


async def test_without_a_limiter_nothing_is_streamed(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    with Simulator(profile="ideal", seed=4, request_log=str(log)) as sim:
        runner, client = _runner(sim, None)
        await _ask(runner, 3)
        await client.close()
        entries = read_request_log(log)
    assert [_streamed(e) for e in entries] == [False] * 3


async def test_a_probe_refused_for_its_own_content_is_not_sent_again(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    settings = {"extra_models": {"tiny-model": 60}, "request_log": str(log)}
    with Simulator(profile="ideal", seed=4, **settings) as sim:
        client = openai.AsyncOpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)
        protection = Protection(limiter=RateLimiter(), gate=AdaptiveConcurrency(8))
        runner = ChatRunner(
            ChatSettings(model="tiny-model", context_strategy="fail"),
            lambda: client,
            protection=protection,
        )
        too_long = [{"role": "user", "content": "word " * 400}]
        try:
            await runner.complete(too_long, max_tokens=10)
        except Exception as exc:
            error: Exception | None = exc
        else:
            error = None
        await client.close()
        entries = read_request_log(log)
    assert error is not None and "context" in str(error).lower()
    assert [(_streamed(e), e["status"]) for e in entries] == [(True, 400)]  # not sent again
    assert runner.sender.probe_streams  # a 400 about the request says nothing of streams
