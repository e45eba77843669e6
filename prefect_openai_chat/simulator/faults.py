"""Fault names, their kinds, and the per-instance draw that picks one for each request.

The same names serve in `fault_rates`, in `script` entries and in the
`x-simulator-fault` request header (a comma list such as `fenced-json,stall` is allowed).

Example:
    >>> from prefect_openai_chat.simulator.faults import parse_fault_list
    >>> parse_fault_list("503")
    ('503',)
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

# --- HTTP faults: answered before any content, for any request ------------------------
HTTP_FAULTS = ("429", "quota", "500", "502", "502-html", "503", "408", "409", "reset", "hang")
# --- stream faults: on a non-stream request, stall = hang, cut = body cut, error = 500 --
STREAM_FAULTS = ("stall", "cut", "stream-error")
# --- content faults: any request ------------------------------------------------------
CONTENT_FAULTS = ("content-filter", "refusal", "lazy")
# --- JSON faults: only when the request asks for JSON -----------------------------------
JSON_FAULTS = (
    "malformed-json",
    "fenced-json",
    "truncated-json",
    "wrong-types",
    "missing-fields",
    "prose-json",
)
# --- shape faults: odd answers real servers and proxies give (see simulator/errors.py) ---
SHAPE_FAULTS = (
    "empty-object",
    "no-choices",
    "invalid-json",
    "text-plain",
    "null-content",
    "echo-key",
    "trickle",
    "ollama-404",
    "detail-error",
    "plain-error",
    "azure-filter",
)
# --- stream-end faults: a stream with a finish_reason but no `data: [DONE]` -------------
END_FAULTS = ("no-done",)
FAULTS: tuple[str, ...] = (
    HTTP_FAULTS + STREAM_FAULTS + CONTENT_FAULTS + JSON_FAULTS + SHAPE_FAULTS + END_FAULTS
)
NO_FAULT = ("ok", "none", "")

FAULT_DOCS: dict[str, str] = {
    "429": "429 rate_limit_exceeded with retry-after and retry-after-ms headers",
    "quota": "429 insufficient_quota (never worth a retry)",
    "500": "500 server_error",
    "502": "502 cf_bad_gateway (JSON body)",
    "502-html": "502 with an HTML page from a proxy",
    "503": "503 server overloaded",
    "408": "408 request timeout",
    "409": "409 conflict",
    "reset": "connection reset before any response (APIConnectionError)",
    "hang": "no response until the client gives up (or hang_s, then a reset)",
    "stall": "a stream sends a few chunks then goes silent for stall_s, then drops",
    "cut": "a stream ends without finish_reason and without [DONE]",
    "stream-error": 'a mid-stream `data: {"error": {...}}` event',
    "content-filter": "finish_reason content_filter with empty or partial content",
    "refusal": "message.refusal set and content None",
    "lazy": "placeholders such as `// ... rest of code` or `[truncated]` instead of content",
    "malformed-json": "JSON with syntax errors (trailing comma, single quotes, ...)",
    "fenced-json": "JSON inside a markdown code fence",
    "truncated-json": "JSON cut mid-way, finish_reason length",
    "wrong-types": "schema-violating values (types, enums)",
    "missing-fields": "required fields left out",
    "prose-json": "prose before and after the JSON",
    "empty-object": "200 with the body `{}`",
    "no-choices": "200 with a completion whose `choices` is empty",
    "invalid-json": "200 application/json with a body that is not JSON",
    "text-plain": "200 text/plain `OK` instead of a completion",
    "null-content": "200 with message.content null and finish_reason stop (a stream: no text)",
    "echo-key": "500 whose error message echoes the caller's API key (a leaky proxy)",
    "trickle": "headers, then one byte per second until hang_s or the client leaves",
    "ollama-404": 'Ollama\'s 404 `{"error": "model \\"llama3\\" not found, try pulling it first"}`',
    "detail-error": '400 `{"detail": "..."}` as FastAPI-based servers answer',
    "plain-error": "400 text/plain error body",
    "azure-filter": "Azure's 400 content_filter with innererror.content_filter_result",
    "no-done": "a stream with finish_reason and usage but without `data: [DONE]`",
}


def parse_fault_list(value: str) -> tuple[str, ...]:
    """Parse `"503"` or `"fenced-json, stall"` into fault names; `"ok"` gives `()`.

    Raises:
        ValueError: a name is not a known fault.
    """
    names: list[str] = []
    for raw in value.split(","):
        name = raw.strip().lower()
        if name in NO_FAULT:
            continue
        if name not in FAULTS:
            raise ValueError(f"unknown simulator fault {name!r}; known faults: {', '.join(FAULTS)}")
        names.append(name)
    return tuple(names)


class FaultPicker:
    """Draws faults from one RNG seeded by `seed`, in request-arrival order.

    Each request draws exactly two numbers (fault, re-prompt failure), whatever
    happens to it, so the sequence of draws is a pure function of the seed.

    Example:
        >>> picker = FaultPicker(seed=7)
        >>> picker.draw({"503": 1.0}, [], 0)[0]
        ('503',)
    """

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def draw(
        self, rates: Mapping[str, float], script: Sequence[str], index: int
    ) -> tuple[tuple[str, ...], float]:
        """Faults for request `index` and a uniform number for the re-prompt failure draw."""
        u_fault = self._rng.random()
        u_reprompt = self._rng.random()
        if index < len(script):
            return parse_fault_list(script[index]), u_reprompt
        cumulative = 0.0
        for name in FAULTS:  # fixed order: the same seed gives the same faults
            rate = rates.get(name, 0.0)
            if rate <= 0.0:
                continue
            cumulative += rate
            if u_fault < cumulative:
                return (name,), u_reprompt
        return (), u_reprompt
