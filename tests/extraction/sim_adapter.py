"""A tiny `call(messages, params) -> ChatResult` over the real AsyncOpenAI client.

It stands in for the lead's chat runner (retries and circuits live there): one HTTP
request per call, `finish_reason` "length" / "content_filter" raised as
`TruncatedOutputError` / `ContentFilteredError` with the `ChatResult` as `.partial`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from openai import AsyncOpenAI

from prefect_openai_chat.errors import ContentFilteredError, TruncatedOutputError
from prefect_openai_chat.results import ChatResult, ToolCall, Usage
from prefect_openai_chat.tokens import estimate_cost

MODEL = "gpt-4o-mini"


@dataclass
class SimCall:
    """Sends each call to the simulator; `faults[i]` forces a fault on the i-th call."""

    base_url: str
    api_key: str
    model: str = MODEL
    faults: list[str | None] = field(default_factory=list)
    sent: list[tuple[list[dict[str, Any]], dict[str, Any]]] = field(default_factory=list)

    async def __call__(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> ChatResult:
        index = len(self.sent)
        self.sent.append((messages, params))
        fault = self.faults[index] if index < len(self.faults) else None
        headers = {"x-simulator-fault": fault} if fault else None
        start = time.perf_counter()
        # a client per call, closed on this event loop (pytest gives each test its own loop)
        async with AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=0) as c:
            raw = await c.chat.completions.with_raw_response.create(
                model=self.model, messages=messages, extra_headers=headers, **params
            )
        completion = raw.parse()
        choice = completion.choices[0]
        usage = completion.usage
        prompt = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        result = ChatResult(
            content=choice.message.content,
            tool_calls=[
                ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
                for c in choice.message.tool_calls or []
                if c.type == "function"
            ],
            finish_reason=choice.finish_reason,
            refusal=choice.message.refusal,
            model=completion.model,
            response_id=completion.id,
            request_id=raw.headers.get("x-request-id"),
            usage=Usage(prompt_tokens=prompt, completion_tokens=completion_tokens),
            cost_usd=estimate_cost(self.model, prompt, completion_tokens),
            latency_s=time.perf_counter() - start,
            flagged=choice.finish_reason == "content_filter",
        )
        if choice.finish_reason == "length":
            raise TruncatedOutputError("the answer hit the token limit", partial=result)
        if choice.finish_reason == "content_filter":
            raise ContentFilteredError("the content filter stopped the answer", partial=result)
        return result


@pytest.fixture(scope="module")
def ideal_sim() -> Iterator[Any]:
    """An `ideal` simulator for the module: faults only where a test forces them."""
    from prefect_openai_chat.simulator import Simulator

    with Simulator(profile="ideal", seed=3) as sim:
        yield sim


def sim_call(sim: Any, *faults: str | None, model: str = MODEL) -> SimCall:
    """A `SimCall` against `sim` with `faults` forced on the first calls."""
    return SimCall(sim.base_url, sim.api_key, model=model, faults=list(faults))
