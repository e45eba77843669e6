"""The `extract_records` run span, its joins with the call spans, and the no-op default."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from flow_defects_support import run_flow
from flow_support import sample_tickets
from openai import AsyncOpenAI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from otel_support import Otel

from prefect_openai_chat import ChatModel
from prefect_openai_chat.chat import ChatRunner, ChatSettings
from prefect_openai_chat.chat.protection import Protection
from prefect_openai_chat.resilience import RetryPolicy
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.telemetry import (
    FLOW_RUN_ID,
    PREFIX,
    instruments,
    note_attempt,
    note_wait,
    observe_call,
    observe_run,
)


def _descends_from(span: ReadableSpan, ancestor: ReadableSpan, spans: list[ReadableSpan]) -> bool:
    by_id = {s.context.span_id: s for s in spans}
    parent = span.parent
    while parent is not None:
        if parent.span_id == ancestor.context.span_id:
            return True
        found = by_id.get(parent.span_id)
        parent = found.parent if found is not None else None
    return False


def test_an_extract_records_run_has_its_span_with_totals_and_the_call_spans_join_it(
    otel: Otel, chat_model: ChatModel, fresh_sim: Simulator, tmp_path: Path
) -> None:
    records = sample_tickets(3)
    summary = run_flow(records, chat_model, tmp_path, batch_size=2)

    [run] = [s for s in otel.ours() if s.name == "extract_records"]
    a = run.attributes or {}
    assert run.status.status_code is not StatusCode.ERROR
    assert a[PREFIX + "records"] == summary["records"] == 3
    assert a[PREFIX + "valid"] == summary["valid"]
    assert a[PREFIX + "quarantined"] == summary["quarantined"]
    assert a[PREFIX + "cached"] == 0
    assert a["gen_ai.usage.input_tokens"] == summary["prompt_tokens"] > 0
    assert a["gen_ai.usage.output_tokens"] == summary["completion_tokens"] > 0
    assert a[PREFIX + "cost_usd"] == summary["cost_usd"] > 0
    calls = otel.calls()
    assert len(calls) >= 3  # one per record at least (re-asks add more)
    everything = otel.finished()
    for call in calls:  # the batches run in Prefect's task threads
        assert (call.attributes or {})[FLOW_RUN_ID] == a[FLOW_RUN_ID]
        assert call.context.trace_id == run.context.trace_id
        assert _descends_from(call, run, everything)  # through Prefect's task run span

    otel.spans.clear()
    again = run_flow(records, chat_model, tmp_path, batch_size=2)  # the ledger answers all
    [rerun] = [s for s in otel.ours() if s.name == "extract_records"]
    assert (rerun.attributes or {})[PREFIX + "cached"] == again["from_cache"] == 3
    assert otel.calls() == []


def test_a_call_in_a_thread_without_the_run_context_is_parented_on_the_run_span(
    otel: Otel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(instruments, "_run_ids", lambda: {"flow_run_id": "flow-1"})
    settings = ChatSettings(model="gpt-4o-mini")

    def call_elsewhere() -> None:  # a plain thread: no copy of the run's context
        with observe_call(settings, [], {}, stream=False):
            pass

    with observe_run("extract_records"):
        worker = threading.Thread(target=call_elsewhere)
        worker.start()
        worker.join()
    with observe_call(settings, [], {}, stream=False):  # after the run: on its own
        pass

    [run] = [s for s in otel.ours() if s.name == "extract_records"]
    during, after = otel.calls()
    assert during.parent is not None and during.parent.span_id == run.context.span_id
    assert (during.attributes or {})[FLOW_RUN_ID] == "flow-1"
    assert after.parent is None


def test_a_run_that_fails_has_error_type_and_the_error_status(otel: Otel) -> None:
    with pytest.raises(RuntimeError), observe_run("extract_records"):
        raise RuntimeError("bookkeeping error: 3 records in, 2 written")

    [run] = [s for s in otel.ours() if s.name == "extract_records"]
    assert run.status.status_code is StatusCode.ERROR
    assert (run.attributes or {})["error.type"] == "RuntimeError"
    assert "bookkeeping" not in str(run.status.description)
    assert not run.events  # no exception event with the message either


def _runner(sim: Simulator) -> ChatRunner:
    client = AsyncOpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)
    return ChatRunner(ChatSettings(model="gpt-4o-mini", base_url=sim.base_url), lambda: client)


def test_a_retried_call_counts_its_attempts_and_retries_on_one_span(
    otel: Otel, fresh_sim: Simulator
) -> None:
    fresh_sim.configure(script=["503", "ok"])
    runner = _runner(fresh_sim)
    runner.protection = Protection(policy=RetryPolicy(backoff_base=0.0, backoff_cap=0.0))

    result = asyncio.run(runner.complete([{"role": "user", "content": "Hi"}]))

    [span] = otel.calls()
    a = span.attributes or {}
    assert result.http_attempts == a[PREFIX + "http_attempts"] == 2
    assert a[PREFIX + "retries"] == 1
    assert "error.type" not in a and span.status.status_code is not StatusCode.ERROR
    assert span.parent is None  # no flow, no run: a root span
    assert FLOW_RUN_ID not in a


def test_with_no_provider_configured_nothing_is_recorded(fresh_sim: Simulator) -> None:
    exporter = InMemorySpanExporter()  # a provider that is not installed globally
    TracerProvider().add_span_processor(SimpleSpanProcessor(exporter))
    messages = [{"role": "user", "content": "Hi"}]

    result = asyncio.run(_runner(fresh_sim).complete(messages))

    assert result.finish_reason == "stop"
    with observe_call(ChatSettings(model="gpt-4o-mini"), messages, {}, stream=False) as call:
        assert call.recording is False
    assert exporter.get_finished_spans() == ()


def _overhead_us(rounds: int = 20_000) -> float:
    """Microseconds one call spends in the telemetry hooks (a span, an attempt, two waits)."""
    settings, messages = ChatSettings(model="gpt-4o-mini"), [{"role": "user", "content": "Hi"}]
    started = time.perf_counter()
    for _ in range(rounds):
        with observe_call(settings, messages, {}, stream=False) as call:
            note_attempt()
            note_wait("circuit", 0.0)
            note_wait("limiter", 0.0)
            call.done(None)  # type: ignore[arg-type]
    return (time.perf_counter() - started) / rounds * 1e6


def test_the_overhead_without_a_provider_is_a_few_microseconds_per_call() -> None:
    overhead = min(_overhead_us() for _ in range(3))
    print(f"telemetry hooks without a provider: {overhead:.2f} us per call")
    assert overhead < 25  # a chat call takes milliseconds; on a loaded 2-core box ~1-3 us
