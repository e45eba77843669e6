"""OpenTelemetry tests: the SDK's in-memory exporter and reader installed as the global
providers for one test, then taken away (the API allows setting them once per process,
so the fixture resets the API's globals, as opentelemetry-test-utils does).

`tests/flows` is put on `sys.path` for its helpers (`flow_support`, `flow_defects_support`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

FLOWS = Path(__file__).resolve().parents[1] / "flows"
if str(FLOWS) not in sys.path:
    sys.path.append(str(FLOWS))

from flow_support import make_model  # noqa: E402
from otel_support import Otel, reset_globals  # noqa: E402

from prefect_openai_chat import ChatModel  # noqa: E402
from prefect_openai_chat.simulator import Simulator  # noqa: E402


@pytest.fixture
def otel() -> Iterator[Otel]:
    """An SDK tracer and meter provider, globally, with in-memory export; removed after."""
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    reset_globals()
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    try:
        yield Otel(exporter, reader)
    finally:
        reset_globals()
        tracer_provider.shutdown()
        meter_provider.shutdown()


@pytest.fixture(autouse=True)
def _harness(isolated_results: None) -> None:
    """The session's Prefect test API; task results and the record cache per test."""


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=23) as simulator:
        yield simulator


@pytest.fixture
def fresh_sim(sim: Simulator) -> Iterator[Simulator]:
    sim.reset()
    yield sim
    sim.configure(script=[], outages=[], ttft_s=0.0)
    sim.reset()


@pytest.fixture
def chat_model(fresh_sim: Simulator) -> ChatModel:
    return make_model(fresh_sim)
