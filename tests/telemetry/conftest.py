"""OpenTelemetry tests: the SDK's in-memory exporter and reader installed as the global
providers for one test, then taken away (the API allows setting them once per process,
so the fixture resets the API's globals, as opentelemetry-test-utils does).

`tests/flows` is put on `sys.path` for its helpers (`flow_support`, `flow_defects_support`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

FLOWS = Path(__file__).resolve().parents[1] / "flows"
if str(FLOWS) not in sys.path:
    sys.path.append(str(FLOWS))

from flow_support import make_model  # noqa: E402

from prefect_openai_chat import ChatModel  # noqa: E402
from prefect_openai_chat.simulator import Simulator  # noqa: E402


def _reset_globals() -> None:
    """Forget the global tracer and meter providers (back to the API's no-op default)."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None


@dataclass
class Otel:
    """What the test's providers recorded."""

    spans: InMemorySpanExporter
    reader: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        """Every span ended so far (Prefect's own flow and task run spans too)."""
        return list(self.spans.get_finished_spans())

    def calls(self) -> list[ReadableSpan]:
        """The plugin's chat call spans."""
        return [s for s in self.ours() if (s.attributes or {}).get("gen_ai.operation.name")]

    def ours(self) -> list[ReadableSpan]:
        """The spans of the plugin's instrumentation scope."""
        scope = "prefect_openai_chat"
        return [s for s in self.finished() if s.instrumentation_scope.name == scope]

    def points(self, metric: str) -> list[Any]:
        """Every data point of `metric` (histogram or sum) collected now."""
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for item in scope.metrics:
                    if item.name == metric:
                        found += list(item.data.data_points)
        return found


@pytest.fixture
def otel() -> Iterator[Otel]:
    """An SDK tracer and meter provider, globally, with in-memory export; removed after."""
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    _reset_globals()
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    try:
        yield Otel(exporter, reader)
    finally:
        _reset_globals()
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
