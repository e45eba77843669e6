"""Issue #10, defect 2: a key the server echoes in its error body never leaves the plugin:
not in the exception (message, args, body, notes, cause chain, request headers), not in
the Prefect task state message, not in any captured log line, not in circuit events."""

from __future__ import annotations

import logging
import pickle
import secrets
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from defect_support import MESSAGES, fault, run_task, sim_model
from prefect.events.worker import EventsWorker
from prefect.testing.fixtures import AssertingEventsClient, asserting_events_worker
from pydantic import BaseModel
from registry_support import clear_resilience

from prefect_openai_chat import chat_completion, extract
from prefect_openai_chat.simulator import Simulator

__all__ = ["asserting_events_worker"]  # the fixture, imported for pytest to find

CHAT = chat_completion.with_options(retry_delay_seconds=0)
EXTRACT = extract.with_options(retry_delay_seconds=0)
OPENAI_STYLE = "sk-proj-" + secrets.token_hex(20)
PLAIN = "azurekey" + secrets.token_hex(16)  # a configured key that looks like nothing


@pytest.fixture(autouse=True)
def _harness(prefect_harness: None) -> None:
    clear_resilience()


@pytest.fixture(scope="module")
def server() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=4, api_keys=[OPENAI_STYLE, PLAIN]) as simulator:
        yield simulator


def everything_said(error: BaseException) -> str:
    """Every text the exception carries: message, repr, args, notes, body, traceback, chain."""
    parts = ["".join(traceback.format_exception(error))]
    seen: BaseException | None = error
    while seen is not None:
        parts += [str(seen), repr(seen), repr(seen.args), repr(getattr(seen, "__notes__", []))]
        parts += [repr(getattr(seen, "body", None)), repr(getattr(seen, "message", None))]
        request = getattr(seen, "request", None)
        if request is not None:
            parts.append(repr(dict(request.headers)))
        response = getattr(seen, "response", None)
        if response is not None:
            parts.append(response.text)
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def assert_clean(text: str, key: str) -> None:
    assert key not in text
    assert key[-8:] not in text


@pytest.mark.parametrize("key", [OPENAI_STYLE, PLAIN], ids=["sk-key", "plain-key"])
def test_an_echoed_key_is_redacted_everywhere(
    server: Simulator, key: str, caplog: pytest.LogCaptureFixture, asserting_events_worker: Any
) -> None:
    server.reset()
    model = sim_model(server, api_key=key, max_attempts=2, task_retries=1, circuit_failures=4)
    with caplog.at_level(logging.DEBUG):
        message, error = run_task(CHAT, model, MESSAGES, **fault("echo-key"))
    assert server.stats().by_status == {500: 4}  # both tiers; the fourth opened the circuit
    assert isinstance(error, openai.InternalServerError), repr(error)
    assert any(e["event"].endswith("circuit.opened") for e in events(asserting_events_worker))
    said = everything_said(error) + pickle.dumps(error).decode("latin-1")
    assert "***" in said  # the server's words are kept, the key is masked
    assert_clean(said, key)
    assert_clean(message, key)
    assert_clean(caplog.text, key)
    assert_clean(repr(events(asserting_events_worker)), key)


class Greeting(BaseModel):
    text: str


def test_an_echoed_key_stays_out_of_an_extraction(
    server: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    server.configure(fault_rates={"echo-key": 1.0})
    server.reset()
    try:
        model = sim_model(server, api_key=PLAIN, max_attempts=1, task_retries=0)
        with caplog.at_level(logging.DEBUG):
            message, outcome = run_task(EXTRACT, model, Greeting, "Say hi to Ada.")
    finally:
        server.configure(fault_rates={})
    assert server.stats().by_status == {500: 1}
    said = repr(outcome) + message
    if isinstance(outcome, BaseException):
        said += everything_said(outcome)
    assert "***" in said
    assert_clean(said, PLAIN)
    assert_clean(caplog.text, PLAIN)


def events(worker: EventsWorker) -> list[Any]:
    worker.drain()
    client = worker._client
    assert isinstance(client, AssertingEventsClient)
    return [e.model_dump() for e in client.events]


def test_an_echoed_key_stays_out_of_the_quarantine_file_and_artifacts(
    server: Simulator, tmp_path: Path, isolated_results: None, caplog: pytest.LogCaptureFixture
) -> None:
    from prefect.client.orchestration import get_client

    from prefect_openai_chat import ExtractionSpec, RunOptions
    from prefect_openai_chat.flows import extract_records

    server.configure(fault_rates={"echo-key": 1.0})
    server.reset()
    records = [{"id": i, "text": f"Say hi to Ada number {i}."} for i in range(3)]
    model = sim_model(server, api_key=PLAIN, max_attempts=1, task_retries=0)
    try:
        with caplog.at_level(logging.DEBUG):
            summary = extract_records(
                source=records,
                output=str(tmp_path / "out.jsonl"),
                quarantine=str(tmp_path / "quarantine.jsonl"),
                spec=ExtractionSpec(
                    schema=Greeting,
                    prompt="{text}",
                    key_field="id",
                ),
                chat_model=model,
                run=RunOptions(
                    cache=False,
                ),
            )
    finally:
        server.configure(fault_rates={})
    assert summary["quarantined"] == 3
    quarantined = (tmp_path / "quarantine.jsonl").read_text(encoding="utf-8")
    assert "***" in quarantined  # the reason keeps the server's words, masked
    assert_clean(quarantined, PLAIN)
    assert_clean(caplog.text, PLAIN)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    assert artifacts
    assert_clean(repr([a.model_dump() for a in artifacts]), PLAIN)
