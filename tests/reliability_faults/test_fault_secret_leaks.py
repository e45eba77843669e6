"""A recognisable fake key never lands anywhere a run leaves traces.

Every task and flow of the plugin, and the demo, run with a canary key
(`sk-test-LEAKCANARY-<random>`) at DEBUG on every logger, against the simulator:
once answering normally, once answering 500 with the key echoed in the error body
(a leaky proxy), once refusing the key with 401. Then everything is scanned for
the key and for its last 8 characters: every log line of every logger, what the
Prefect API stored (flow and task runs with their parameters, states, cache keys,
logs, artifacts, events, blocks), every file written (task results, outputs,
quarantines, record caches, the demo's folder) and every exception raised.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flow_support import sample_tickets, write_jsonl
from leak_scan_support import (
    Catch,
    api_texts,
    every_logger,
    exception_text,
    file_texts,
    found_in,
)
from model_support import fast_model
from prefect import flow
from pydantic import BaseModel
from registry_support import clear_resilience

from prefect_openai_chat import (
    ExtractionSpec,
    OpenAICredentials,
    RunOptions,
    chat_completion,
    extract,
    extract_batch,
    stream_chat_completion,
)
from prefect_openai_chat.examples.tickets import TICKET_PROMPT
from prefect_openai_chat.flows import extract_records
from prefect_openai_chat.simulator import Simulator

KEY = "sk-test-LEAKCANARY-" + secrets.token_hex(12)
REFUSED = "sk-test-LEAKCANARY-" + secrets.token_hex(12)  # a key the server does not accept
NEEDLES = [KEY, KEY[-8:], REFUSED, REFUSED[-8:]]
MESSAGES = [{"role": "user", "content": "Say hi to Ada."}]
SCHEMA = "prefect_openai_chat.examples.tickets:SupportTicket"


class Greeting(BaseModel):
    name: str


@dataclass
class Traces:
    """What the runs left: log lines, exceptions and results, and the folder they wrote."""

    folder: Path
    logs: list[str] = field(default_factory=list)
    said: dict[str, str] = field(default_factory=dict)  # what each run returned or raised


def _every_task(label: str, model: Any, folder: Path, traces: Traces) -> None:
    """Each task and the flow once with `model`; what each returned or raised is kept."""
    tickets = sample_tickets(6)
    source = write_jsonl(folder / f"{label}-tickets.jsonl", tickets)

    @flow(name=f"leak-scan-{label}")
    def every_task() -> dict[str, Any]:
        runs = {
            "chat_completion": chat_completion(model, MESSAGES, return_state=True),
            "stream_chat_completion": stream_chat_completion(model, MESSAGES, return_state=True),
            "extract": extract(
                model,
                Greeting,
                "Say hi to Ada.",
                cache=str(folder / f"{label}-extract-cache.sqlite"),
                return_state=True,
            ),
            "extract_batch": extract_batch(
                model,
                Greeting,
                [{"text": "Say hi to Ada."}, {"text": "Say hi to Bo."}],
                cache=str(folder / f"{label}-batch-cache.sqlite"),
                return_state=True,
            ),
        }
        return {name: state.result(raise_on_failure=False) for name, state in runs.items()}

    outcomes = every_task()
    for name, outcome in outcomes.items():
        text = exception_text(outcome) if isinstance(outcome, BaseException) else repr(outcome)
        traces.said[f"{label} {name}"] = text
    try:
        summary = extract_records(
            source=str(source),
            output=str(folder / f"{label}-out.jsonl"),
            quarantine=str(folder / f"{label}-quarantine.jsonl"),
            spec=ExtractionSpec(
                schema=SCHEMA,
                prompt=TICKET_PROMPT,
                key_field="ticket_id",
            ),
            chat_model=model,
            run=RunOptions(
                cache=str(folder / f"{label}-records-cache.sqlite"),
            ),
        )
        traces.said[f"{label} extract_records"] = repr(summary)
    except Exception as exc:
        traces.said[f"{label} extract_records"] = exception_text(exc)


@pytest.fixture(scope="module")
def traces(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traces]:
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from prefect_openai_chat.demo import run_demo

    folder = tmp_path_factory.mktemp("leak-scan")
    found = Traces(folder)
    catch = Catch()
    loggers = list(every_logger())
    saved = [(lg, lg.level, lg.propagate) for lg in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.addHandler(catch)  # also those that do not propagate to the root
    environment = {"OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY"), "OPENAI_BASE_URL": None}
    clear_resilience()
    try:
        with (
            Simulator(profile="ideal", seed=3, api_keys=[KEY]) as sim,
            temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: folder / "results"}),
        ):
            good = fast_model(sim.base_url, KEY, task_retries=0, max_attempts=2)
            echoed = good.model_copy(
                update={
                    "credentials": OpenAICredentials(
                        base_url=sim.base_url,
                        api_key=KEY,
                        default_headers={"x-simulator-fault": "echo-key"},
                    )
                }
            )
            refused = fast_model(sim.base_url, REFUSED, task_retries=0, max_attempts=2)
            for label, model in (("good", good), ("echoed", echoed), ("refused", refused)):
                _every_task(label, model, folder, found)
            environment["OPENAI_BASE_URL"] = os.environ.get("OPENAI_BASE_URL")
            os.environ["OPENAI_API_KEY"], os.environ["OPENAI_BASE_URL"] = KEY, sim.base_url
            demo = run_demo(real=True, records=8, output=str(folder / "demo"))
            found.said["demo"] = repr(demo)
    finally:
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for logger, level, propagate in saved:
            logger.setLevel(level)
            logger.propagate = propagate
            logger.removeHandler(catch)
        clear_resilience()
    found.logs = catch.lines
    yield found


def test_the_runs_did_what_the_scan_relies_on(traces: Traces) -> None:
    """The scan is only worth something if the key was used, echoed and refused."""
    assert (
        "valid=2" in traces.said["good extract_batch"]
        or "ok=True" in (traces.said["good extract_batch"])
    )
    assert "InternalServerError" in traces.said["echoed chat_completion"]
    assert "***" in traces.said["echoed chat_completion"]  # the echoed key, masked
    assert "rejected (401)" in traces.said["refused chat_completion"]
    assert "'records': 8" in traces.said["demo"]
    assert sum("DEBUG" in line for line in traces.logs) > 100  # DEBUG was really on


def test_no_log_line_of_any_logger_holds_the_key(traces: Traces) -> None:
    print(f"leak scan: {len(traces.logs)} log lines")
    assert found_in({"log": "\n".join(traces.logs)}, NEEDLES) == []


def test_no_result_or_exception_holds_the_key(traces: Traces) -> None:
    print(f"leak scan: {len(traces.said)} results and exceptions")
    assert found_in(traces.said, NEEDLES) == []


def test_no_file_written_holds_the_key(traces: Traces) -> None:
    """Outputs, quarantines, record ledgers (`extract` keeps its outcomes there, not in
    Prefect's result store), the demo's folder, any task result persisted."""
    texts = file_texts(traces.folder)
    print(f"leak scan: {len(texts)} files, {sum(map(len, texts.values()))} bytes")
    assert any(path.endswith("extract-cache.sqlite") for path in texts)  # extract's ledger
    assert any(path.endswith("records-cache.sqlite") for path in texts)
    assert found_in(texts, NEEDLES) == []


def test_nothing_the_prefect_api_stored_holds_the_key(traces: Traces) -> None:
    """Flow and task runs (parameters, states, cache keys), logs, artifacts, events, blocks."""
    texts = api_texts()
    print(f"leak scan: {len(texts)} API texts, {sum(map(len, texts.values()))} characters")
    everything = "".join(texts.values())
    # stored, masked (the credentials' network settings come first, then the key)
    assert re.search(r'"chat_model":\{"credentials":\{[^{}]*"api_key":"\*{10}"', everything)
    assert "prefect.flow-run.Completed" in texts["events"]
    assert found_in(texts, NEEDLES) == []
