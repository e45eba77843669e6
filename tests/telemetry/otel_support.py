"""What the telemetry tests' in-memory providers recorded (`Otel`), and resetting the API's
global providers; imported by name (`otel_support`), unlike a conftest module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once


def reset_globals() -> None:
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
