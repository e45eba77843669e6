"""The span of one `extract_records` run (`observe_run`): the parent, or the link, of
the spans of its calls."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from prefect_openai_chat.telemetry.instruments import (
    FLOW_RUN_ID,
    PREFIX,
    RUN_SPANS,
    current_instruments,
    error_type,
    run_ids,
)


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
    instruments = current_instruments()
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
        RUN_SPANS[flow_run_id] = span.get_span_context()
    try:
        with trace.use_span(
            span, end_on_exit=True, record_exception=False, set_status_on_exception=False
        ):
            try:
                yield RunSpan(span)
            except BaseException as exc:
                span.set_attribute("error.type", error_type(exc))
                span.set_status(Status(StatusCode.ERROR, error_type(exc)))
                raise
    finally:
        if flow_run_id:
            RUN_SPANS.pop(flow_run_id, None)
