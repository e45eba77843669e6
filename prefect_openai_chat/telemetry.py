"""OpenTelemetry spans and metrics for every chat call and every `extract_records` run.

What a call carries follows the OpenTelemetry GenAI semantic conventions (a `chat {model}`
client span with `gen_ai.*` attributes, the `gen_ai.client.token.usage` and
`gen_ai.client.operation.duration` histograms); what only this plugin knows (cost,
HTTP attempts, retries, the circuit, time waited for the circuit and the rate limiter,
the Prefect run ids) is under the `prefect_openai_chat.` prefix. See
docs/concepts/opentelemetry.md.

Only `opentelemetry-api` is used: until the user configures a tracer or meter provider
(the SDK and an exporter), the API's no-op default is in force and `observe_call` returns
a shared no-op at the cost of two global reads. Prompts and answers are recorded only when
`PREFECT_OPENAI_CHAT_OTEL_CAPTURE_CONTENT` is true, and then through `bounded_text` (known
secrets, keys and bearer tokens masked, at most `CONTENT_LIMIT` bytes).

This module is Prefect-free: the task layer installs the reader of the Prefect run ids
(`install_run_ids`), so the core layers can call it.

Example:
    >>> from prefect_openai_chat.chat.settings import ChatSettings
    >>> with observe_call(ChatSettings(model="gpt-4o-mini"), [], {}, stream=False) as call:
    ...     call.recording  # no provider configured: nothing is recorded
    False
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import metrics, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from prefect_openai_chat.redaction import bounded_text

if TYPE_CHECKING:
    from prefect_openai_chat.chat.settings import ChatSettings
    from prefect_openai_chat.resilience.circuit import CircuitGuard
    from prefect_openai_chat.results import ChatResult

CAPTURE_ENV = "PREFECT_OPENAI_CHAT_OTEL_CAPTURE_CONTENT"
CONTENT_LIMIT = 16 * 1024  # bytes of UTF-8 kept of the captured messages of one call
PREFIX = "prefect_openai_chat."
FLOW_RUN_ID = PREFIX + "prefect.flow_run_id"
TASK_RUN_ID = PREFIX + "prefect.task_run_id"
_SCOPE = "prefect_openai_chat"
_REQUEST_PARAMETERS = {  # request field -> gen_ai.request.* attribute
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "max_tokens": "gen_ai.request.max_tokens",
    "seed": "gen_ai.request.seed",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
}
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
class _Instruments:
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


_instruments: _Instruments | None = None
_lock = threading.Lock()


def _current() -> _Instruments:
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


def _build(tracer_provider: Any, meter_provider: Any) -> _Instruments:
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
        _instruments = _Instruments(tracer_provider, meter_provider, tracer, tokens, duration, cost)
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


# --- one chat call ---------------------------------------------------------------------


class ChatCall:
    """One logical call being observed: the runner feeds it attempts, waits and the result."""

    recording = True

    def __init__(
        self,
        instruments: _Instruments,
        span: trace.Span,
        base: dict[str, Any],
        guard: CircuitGuard | None,
        capture: bool,
    ) -> None:
        self.instruments, self.span, self.base, self.guard = instruments, span, base, guard
        self.capture = capture
        self.started = time.perf_counter()
        self.attempts = 0
        self.waited = {"circuit": 0.0, "limiter": 0.0}
        self.result: ChatResult | None = None

    def attempt(self) -> None:
        """One HTTP attempt was started."""
        self.attempts += 1

    def wait(self, kind: str, seconds: float) -> None:
        """`seconds` were spent waiting for `kind` (`circuit`, `limiter`)."""
        self.waited[kind] = self.waited.get(kind, 0.0) + seconds

    def done(self, result: ChatResult) -> ChatResult:
        """The call's checked result (returned unchanged)."""
        self.result = result
        return result

    def _end(self, error: BaseException | None) -> None:
        span, result = self.span, self.result
        attributes = self._plugin_attributes()
        if result is not None and error is None:
            attributes.update(_result_attributes(result))
            if self.capture:
                attributes["gen_ai.output.messages"] = _captured(_output_messages(result))
        if error is not None:
            attributes["error.type"] = _error_type(error)
            span.set_status(Status(StatusCode.ERROR, self._description(error)))
            if self.capture:
                span.add_event(
                    "exception",
                    {
                        "exception.type": attributes["error.type"],
                        "exception.message": self._description(error),
                    },
                )
        span.set_attributes(attributes)
        span.end()
        self._record_metrics(error)

    def _description(self, error: BaseException) -> str:
        """The status description: the error class, and its redacted message with capture on."""
        if not self.capture:
            return _error_type(error)
        return bounded_text(f"{_error_type(error)}: {error}", 1024, "the error")

    def _plugin_attributes(self) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            PREFIX + "http_attempts": self.attempts,
            PREFIX + "retries": max(self.attempts - 1, 0),
            PREFIX + "circuit_wait_s": round(self.waited["circuit"], 6),
            PREFIX + "limiter_wait_s": round(self.waited["limiter"], 6),
        }
        if self.guard is not None:
            with contextlib.suppress(Exception):  # a shared state unreadable now: left out
                attributes[PREFIX + "circuit_state"] = self.guard.state
        return attributes

    def _record_metrics(self, error: BaseException | None) -> None:
        inst, result = self.instruments, self.result
        if inst.duration is None:
            return
        labels = {k: v for k, v in self.base.items() if k in _METRIC_LABELS}
        if error is not None:
            labels["error.type"] = _error_type(error)
        elif result is not None and result.model:
            labels["gen_ai.response.model"] = result.model
        inst.duration.record(time.perf_counter() - self.started, labels)
        if result is None or error is not None or inst.tokens is None:
            return
        inst.tokens.record(result.usage.prompt_tokens, {**labels, "gen_ai.token.type": "input"})
        inst.tokens.record(
            result.usage.completion_tokens, {**labels, "gen_ai.token.type": "output"}
        )
        if inst.cost is not None and result.cost_usd:
            inst.cost.add(result.cost_usd, labels)


class _NoCall(ChatCall):
    """What `observe_call` gives when no provider is configured: every method does nothing."""

    recording = False

    def __init__(self) -> None:
        pass

    def attempt(self) -> None:
        pass

    def wait(self, kind: str, seconds: float) -> None:
        pass

    def done(self, result: ChatResult) -> ChatResult:
        return result


_NO_CALL = _NoCall()
_CALL: ContextVar[ChatCall | None] = ContextVar("prefect_openai_chat_otel_call", default=None)
_METRIC_LABELS = frozenset(
    {
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.system",
        "gen_ai.request.model",
        "server.address",
        "server.port",
    }
)


class _NotObserved(AbstractContextManager[ChatCall]):
    """`observe_call` without a provider: hands out the shared no-op, no generator made."""

    def __enter__(self) -> ChatCall:
        return _NO_CALL

    def __exit__(self, *exc: object) -> None:
        return None


_NOT_OBSERVED = _NotObserved()


def observe_call(
    settings: ChatSettings,
    messages: Sequence[Any],
    overrides: Mapping[str, Any],
    *,
    stream: bool,
    guard: CircuitGuard | None = None,
) -> AbstractContextManager[ChatCall]:
    """Observe one logical chat call: a `chat {model}` span, and the GenAI metrics.

    Give the call's result to `call.done(result)`; an exception leaving the block sets
    `error.type` and the span's error status (its message only with capture on).
    """
    instruments = _current()
    if not instruments.on:
        return _NOT_OBSERVED
    return _observed(instruments, settings, messages, overrides, stream, guard)


@contextmanager
def _observed(
    instruments: _Instruments,
    settings: ChatSettings,
    messages: Sequence[Any],
    overrides: Mapping[str, Any],
    stream: bool,
    guard: CircuitGuard | None,
) -> Iterator[ChatCall]:
    try:
        call = _begin(instruments, settings, messages, overrides, stream, guard)
    except Exception:  # telemetry never fails a call: this one goes unobserved
        yield _NO_CALL
        return
    token = _CALL.set(call)
    error: BaseException | None = None
    try:
        with trace.use_span(call.span, record_exception=False, set_status_on_exception=False):
            yield call
    except BaseException as exc:
        error = exc
        raise
    finally:
        _CALL.reset(token)
        with contextlib.suppress(Exception):  # telemetry never fails a call
            call._end(error)


def _begin(
    instruments: _Instruments,
    settings: ChatSettings,
    messages: Sequence[Any],
    overrides: Mapping[str, Any],
    stream: bool,
    guard: CircuitGuard | None,
) -> ChatCall:
    """The call's span started with the request's attributes (and its messages, captured)."""
    model = str(overrides.get("model") or settings.model)
    base = _request_attributes(settings, model, overrides, stream)
    capture = capture_content()
    if capture:
        base["gen_ai.input.messages"] = _captured(_input_messages(messages))
    span = _start_call_span(instruments, model, base)
    return ChatCall(instruments, span, base, guard, capture)


def note_attempt() -> None:
    """An HTTP attempt of the observed call was started (for the runner)."""
    call = _CALL.get()
    if call is not None:
        call.attempt()


def note_wait(kind: str, seconds: float) -> None:
    """The observed call waited `seconds` for `kind`: `circuit` or `limiter` (retry loop)."""
    call = _CALL.get()
    if call is not None and seconds > 0:
        call.wait(kind, seconds)


def _start_call_span(instruments: _Instruments, model: str, base: dict[str, Any]) -> trace.Span:
    """The client span; with the run's span as parent when no span is current (a thread
    without the run's context), or a link to it when the current span is in another trace."""
    ids = run_ids()
    attributes = dict(base)
    if "flow_run_id" in ids:
        attributes[FLOW_RUN_ID] = ids["flow_run_id"]
    if "task_run_id" in ids:
        attributes[TASK_RUN_ID] = ids["task_run_id"]
    context, links = None, []
    run_span = _RUNS.get(ids.get("flow_run_id", ""))
    if run_span is not None:
        current = trace.get_current_span().get_span_context()
        if not current.is_valid:
            context = trace.set_span_in_context(trace.NonRecordingSpan(run_span))
        elif current.trace_id != run_span.trace_id:
            links = [Link(run_span, {PREFIX + "link": "the run"})]
    assert instruments.tracer is not None or instruments.duration is not None
    if instruments.tracer is None:  # metrics only
        return trace.INVALID_SPAN
    return instruments.tracer.start_span(
        f"chat {model}", context, kind=SpanKind.CLIENT, attributes=attributes, links=links
    )


def _request_attributes(
    settings: ChatSettings, model: str, overrides: Mapping[str, Any], stream: bool
) -> dict[str, Any]:
    provider, host, port = provider_of(settings.base_url)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,  # the older name, still read by many backends
        "gen_ai.request.model": model,
        PREFIX + "stream": stream,
        PREFIX + "chat_model": settings.name,
    }
    if host:
        attributes["server.address"] = host
    if port:
        attributes["server.port"] = port
    request = {**settings.request_defaults(), **overrides}
    for field, name in _REQUEST_PARAMETERS.items():
        value = request.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attributes[name] = value
    return attributes


def _result_attributes(result: ChatResult) -> dict[str, Any]:
    usage = result.usage
    attributes: dict[str, Any] = {
        "gen_ai.response.model": result.model,
        "gen_ai.response.finish_reasons": [result.finish_reason or "unknown"],
        "gen_ai.usage.input_tokens": usage.prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens,
        "gen_ai.usage.cache_read.input_tokens": usage.cached_tokens,
        PREFIX + "answered_by": result.answered_by,
        PREFIX + "latency_s": round(result.latency_s, 6),
        PREFIX + "flagged": result.flagged,
    }
    if result.response_id:
        attributes["gen_ai.response.id"] = result.response_id
    if result.request_id:
        attributes[PREFIX + "request_id"] = result.request_id
    if result.cost_usd is not None:
        attributes[PREFIX + "cost_usd"] = result.cost_usd
    if result.time_to_first_token_s is not None:
        attributes[PREFIX + "time_to_first_token_s"] = round(result.time_to_first_token_s, 6)
    return attributes


def _error_type(error: BaseException) -> str:
    """`error.type`: the exception's class, qualified unless it is a builtin."""
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"


# --- content, only with capture on -------------------------------------------------------


def _captured(messages: list[dict[str, Any]]) -> str:
    """Messages as the conventions' JSON, through the redaction boundary."""
    return bounded_text(json.dumps(messages, ensure_ascii=False), CONTENT_LIMIT, "the messages")


def _input_messages(messages: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        text = content if isinstance(content, str) else json.dumps(content, default=str)
        out.append({"role": message.get("role"), "parts": [{"type": "text", "content": text}]})
    return out


def _output_messages(result: ChatResult) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if result.content is not None:
        parts.append({"type": "text", "content": result.content})
    for tool_call in result.tool_calls:
        parts.append(
            {
                "type": "tool_call",
                "id": tool_call.id,
                "name": tool_call.name,
                "arguments": tool_call.arguments,
            }
        )
    return [{"role": "assistant", "parts": parts, "finish_reason": result.finish_reason}]


# --- one extract_records run -------------------------------------------------------------

_RUNS: dict[str, trace.SpanContext] = {}  # flow run id -> its run span, while the run lasts


class RunSpan:
    """The span of one run; `totals` sets what the run did."""

    def __init__(self, span: trace.Span) -> None:
        self.span = span

    def totals(self, totals: Mapping[str, Any]) -> None:
        """Records, valid, quarantined, from the ledger, tokens and cost of the run."""
        if not self.span.is_recording():
            return
        names = {
            "records": PREFIX + "records",
            "valid": PREFIX + "valid",
            "quarantined": PREFIX + "quarantined",
            "from_cache": PREFIX + "cached",
            "prompt_tokens": "gen_ai.usage.input_tokens",
            "completion_tokens": "gen_ai.usage.output_tokens",
            "cost_usd": PREFIX + "cost_usd",
            "retries": PREFIX + "retries",
        }
        self.span.set_attributes(
            {name: totals[key] for key, name in names.items() if totals.get(key) is not None}
        )


@contextmanager
def observe_run(name: str, **attributes: str | int | bool) -> Iterator[RunSpan]:
    """A span around one run (`extract_records`), current while the block runs.

    Call spans of the same Prefect flow run become its children where they run in its
    context, and link to it where another span (Prefect's task run span) is current.
    """
    instruments = _current()
    if instruments.tracer is None:
        yield RunSpan(trace.INVALID_SPAN)
        return
    ids = run_ids()
    flow_run_id = ids.get("flow_run_id", "")
    span_attributes: dict[str, Any] = {PREFIX + "operation": name, **attributes}
    if flow_run_id:
        span_attributes[FLOW_RUN_ID] = flow_run_id
    span = instruments.tracer.start_span(name, attributes=span_attributes)
    if flow_run_id:
        _RUNS[flow_run_id] = span.get_span_context()
    try:
        with trace.use_span(
            span, end_on_exit=True, record_exception=False, set_status_on_exception=False
        ):
            try:
                yield RunSpan(span)
            except BaseException as exc:
                span.set_attribute("error.type", _error_type(exc))
                span.set_status(Status(StatusCode.ERROR, _error_type(exc)))
                raise
    finally:
        if flow_run_id:
            _RUNS.pop(flow_run_id, None)
