"""The instruments of the providers in force, the Prefect run ids, and what every span
shares: the attribute names, the endpoint's provider, an error's type, the run spans in
progress."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import metrics, trace

CAPTURE_ENV = "PREFECT_OPENAI_CHAT_OTEL_CAPTURE_CONTENT"
CONTENT_LIMIT = 16 * 1024  # bytes of UTF-8 kept of the captured messages of one call
PREFIX = "prefect_openai_chat."
FLOW_RUN_ID = PREFIX + "prefect.flow_run_id"
TASK_RUN_ID = PREFIX + "prefect.task_run_id"
_SCOPE = "prefect_openai_chat"
# Buckets the conventions advise for the two histograms.
_TOKEN_BUCKETS = [4**n for n in range(1, 14)]
_DURATION_BUCKETS = [0.01 * 2**n for n in range(14)]

RunIds = Callable[[], Mapping[str, str]]
_run_ids: RunIds | None = None  # installed by the task layer: the Prefect flow and task run ids


def install_run_ids(reader: RunIds) -> None:
    """Let every span carry the run ids `reader` returns (`{"flow_run_id": ..., ...}`)."""
    global _run_ids
    _run_ids = reader


def run_ids() -> dict[str, str]:
    """The ids the installed reader returns now (none outside a run, or without a reader)."""
    reader = _run_ids
    if reader is None:
        return {}
    try:
        return dict(reader())
    except Exception:  # telemetry never fails a call
        return {}


def capture_content() -> bool:
    """Whether prompts and answers go into spans (`PREFECT_OPENAI_CHAT_OTEL_CAPTURE_CONTENT`)."""
    return os.environ.get(CAPTURE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Instruments:
    """The tracer and the instruments of the providers in force (rebuilt when they change)."""

    tracer_provider: object
    meter_provider: object
    tracer: trace.Tracer | None
    tokens: metrics.Histogram | None
    duration: metrics.Histogram | None
    cost: metrics.Counter | None

    @property
    def on(self) -> bool:
        return self.tracer is not None or self.duration is not None


_instruments: Instruments | None = None
_lock = threading.Lock()


def current_instruments() -> Instruments:
    """The instruments for the global providers; two global reads when nothing changed."""
    tracer_provider, meter_provider = trace.get_tracer_provider(), metrics.get_meter_provider()
    cached = _instruments
    if (
        cached is not None
        and cached.tracer_provider is tracer_provider
        and cached.meter_provider is meter_provider
    ):
        return cached
    return _build(tracer_provider, meter_provider)


def _build(tracer_provider: Any, meter_provider: Any) -> Instruments:
    global _instruments
    tracer = None
    if not isinstance(tracer_provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        tracer = tracer_provider.get_tracer(_SCOPE)
    tokens = duration = cost = None
    if type(meter_provider).__name__ not in {"_ProxyMeterProvider", "NoOpMeterProvider"}:
        meter = meter_provider.get_meter(_SCOPE)
        tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        cost = meter.create_counter(
            PREFIX + "client.cost", unit="USD", description="Estimated cost of the chat calls."
        )
    with _lock:
        _instruments = Instruments(tracer_provider, meter_provider, tracer, tokens, duration, cost)
        return _instruments


def provider_of(base_url: str) -> tuple[str, str | None, int | None]:
    """`gen_ai.provider.name`, `server.address` and `server.port` of an endpoint.

    Example:
        >>> provider_of("https://my-res.openai.azure.com/openai/deployments/gpt")
        ('azure.ai.openai', 'my-res.openai.azure.com', 443)
        >>> provider_of("http://127.0.0.1:8000/v1")
        ('openai', '127.0.0.1', 8000)
    """
    parts = urlsplit(base_url)
    host = parts.hostname
    try:
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    except ValueError:
        port = None
    azure = host is not None and (host.endswith(".azure.com") or host.endswith(".azure.us"))
    return ("azure.ai.openai" if azure else "openai"), host, port


def error_type(error: BaseException) -> str:
    """`error.type`: the exception's class, qualified unless it is a builtin."""
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"


RUN_SPANS: dict[str, trace.SpanContext] = {}  # flow run id -> its run span, while the run lasts
