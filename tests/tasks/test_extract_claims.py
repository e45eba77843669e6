"""`extract` takes ledger claims: two calls on the same text at once pay for one answer.

Real parts only: two `aextract` task runs in one Prefect flow, concurrently, against the
simulator over HTTP, sharing the default record ledger (a SQLite file per test). The
simulator answers after `ttft_s`, so the second call starts while the first holds its
claim; it waits for the first's outcome instead of asking again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from prefect import flow

from prefect_openai_chat import ChatModel, Extraction, OpenAICredentials, aextract
from prefect_openai_chat.examples.tickets import SupportTicket
from prefect_openai_chat.simulator import Simulator

TEXT = (
    "Subject: Wrong price charged\n\nName: Wei Farouk\nEmail: wei.farouk@acme-logistics.com\n"
    "Order ID: ORD-25347\n\nI paid €207.90 on 2023-12-23 for the Brew Mini; please refund."
)


@pytest.fixture(autouse=True)
def _isolated_results(isolated_results: None) -> None:
    """The default record ledger per test."""


@pytest.fixture
def slow_sim() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=3, ttft_s=0.5) as simulator:
        yield simulator


def _model(sim: Simulator) -> ChatModel:
    credentials = OpenAICredentials(base_url=sim.base_url, api_key=sim.api_key)
    return ChatModel(credentials=credentials, model="gpt-4o-mini", max_completion_tokens=400)


async def test_two_concurrent_extract_calls_on_the_same_text_pay_once(slow_sim: Simulator) -> None:
    model = _model(slow_sim)

    @flow
    async def two_at_once() -> list[Extraction[Any]]:
        return list(
            await asyncio.gather(
                aextract(model, SupportTicket, TEXT), aextract(model, SupportTicket, TEXT)
            )
        )

    first, second = await two_at_once()
    assert first.ok and second.ok
    assert first.value == second.value
    assert slow_sim.stats().requests == 1  # one answer, paid once; the other call waited for it


async def test_without_a_ledger_each_call_pays(slow_sim: Simulator) -> None:
    model = _model(slow_sim)

    @flow
    async def two_at_once() -> list[Extraction[Any]]:
        return list(
            await asyncio.gather(
                aextract(model, SupportTicket, TEXT, cache=False),
                aextract(model, SupportTicket, TEXT, cache=False),
            )
        )

    results = await two_at_once()
    assert all(result.ok for result in results)
    assert slow_sim.stats().requests == 2
