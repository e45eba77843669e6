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

The code is in three modules: `instruments` (the providers' instruments, the run ids,
what every span shares), `calls` (one chat call), `runs` (one run); this package
re-exports their public names.

Example:
    >>> from prefect_openai_chat.chat.settings import ChatSettings
    >>> with observe_call(ChatSettings(model="gpt-4o-mini"), [], {}, stream=False) as call:
    ...     call.recording  # no provider configured: nothing is recorded
    False
"""

from __future__ import annotations

from prefect_openai_chat.telemetry.calls import ChatCall, note_attempt, note_wait, observe_call
from prefect_openai_chat.telemetry.instruments import (
    CAPTURE_ENV,
    CONTENT_LIMIT,
    FLOW_RUN_ID,
    PREFIX,
    TASK_RUN_ID,
    RunIds,
    capture_content,
    install_run_ids,
    provider_of,
    run_ids,
)
from prefect_openai_chat.telemetry.runs import RunSpan, observe_run

__all__ = [
    "CAPTURE_ENV",
    "CONTENT_LIMIT",
    "FLOW_RUN_ID",
    "PREFIX",
    "TASK_RUN_ID",
    "ChatCall",
    "RunIds",
    "RunSpan",
    "capture_content",
    "install_run_ids",
    "note_attempt",
    "note_wait",
    "observe_call",
    "observe_run",
    "provider_of",
    "run_ids",
]
