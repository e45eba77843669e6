"""The span and metrics of one chat call (`observe_call`), fed by the runner's attempts
and waits (`note_attempt`, `note_wait`); prompts and answers only with capture on."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from prefect_openai_chat.redaction import bounded_text
from prefect_openai_chat.telemetry.instruments import (
    CONTENT_LIMIT,
    FLOW_RUN_ID,
    PREFIX,
    RUN_SPANS,
    TASK_RUN_ID,
    Instruments,
    capture_content,
    current_instruments,
    error_type,
    provider_of,
    run_ids,
)

if TYPE_CHECKING:
    from prefect_openai_chat.chat.settings import ChatSettings
    from prefect_openai_chat.resilience.circuit import CircuitGuard
    from prefect_openai_chat.results import ChatResult

_REQUEST_PARAMETERS = {  # request field -> gen_ai.request.* attribute
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "max_tokens": "gen_ai.request.max_tokens",
    "seed": "gen_ai.request.seed",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
}


class ChatCall:
    """One logical call being observed: the runner feeds it attempts, waits and the result."""

    recording = True

    def __init__(
        self,
        instruments: Instruments,
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
            attributes["error.type"] = error_type(error)
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
            return error_type(error)
        return bounded_text(f"{error_type(error)}: {error}", 1024, "the error")

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
            labels["error.type"] = error_type(error)
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
    instruments = current_instruments()
    if not instruments.on:
        return _NOT_OBSERVED
    return _observed(instruments, settings, messages, overrides, stream, guard)


@contextmanager
def _observed(
    instruments: Instruments,
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
    instruments: Instruments,
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


def _start_call_span(instruments: Instruments, model: str, base: dict[str, Any]) -> trace.Span:
    """The client span; with the run's span as parent when no span is current (a thread
    without the run's context), or a link to it when the current span is in another trace."""
    ids = run_ids()
    attributes = dict(base)
    if "flow_run_id" in ids:
        attributes[FLOW_RUN_ID] = ids["flow_run_id"]
    if "task_run_id" in ids:
        attributes[TASK_RUN_ID] = ids["task_run_id"]
    context, links = None, []
    run_span = RUN_SPANS.get(ids.get("flow_run_id", ""))
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
