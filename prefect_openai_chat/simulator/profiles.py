"""Named profiles: ready-made settings for the situations a pipeline must survive.

- `ideal`: no faults, no limits, no latency; every request succeeds.
- `flaky`: ~3% 429 `rate_limit_exceeded` (retry-after 0.5 s), ~4% 500/502/503,
  0.5% connection resets.
- `rate-limited`: 60 requests and 20,000 tokens per minute per key, with
  `time_scale=10` (a minute lasts 6 s).
- `outage`: every request answered 503 from 1 s to 6 s after the start (or a
  reset), normal before and after.
- `sloppy-json`: ~19% of first JSON answers fenced, wrapped in prose, malformed,
  truncated, mistyped, incomplete or lazy; re-prompts fail again 5% of the time.
- `chaos`: all of the above at once, plus hangs, stalls, cut streams, stream
  errors, content filter, refusals and a 2 s connection-refusing outage at 5 s.

`profiles_markdown()` renders the same as a table for the README.

Example:
    >>> from prefect_openai_chat.simulator import PROFILES
    >>> PROFILES["flaky"].fault_rates["429"]
    0.03
"""

from __future__ import annotations

from typing import Any

from prefect_openai_chat.simulator.settings import OutageWindow, SimulatorSettings

_FLAKY_RATES = {"429": 0.03, "500": 0.01, "502": 0.01, "503": 0.02, "reset": 0.005}
_SLOPPY_RATES = {
    "fenced-json": 0.04,
    "prose-json": 0.03,
    "malformed-json": 0.03,
    "truncated-json": 0.02,
    "wrong-types": 0.03,
    "missing-fields": 0.03,
    "lazy": 0.01,
}
_CHAOS_EXTRA = {
    "quota": 0.002,
    "502-html": 0.01,
    "408": 0.005,
    "409": 0.005,
    "hang": 0.005,
    "stall": 0.01,
    "cut": 0.01,
    "stream-error": 0.01,
    "content-filter": 0.01,
    "refusal": 0.005,
}

PROFILE_DOCS: dict[str, str] = {
    "ideal": "no faults, no limits, no latency: every request succeeds",
    "flaky": "~3% 429 rate_limit_exceeded (retry-after 0.5 s), ~4% 500/502/503, 0.5% resets",
    "rate-limited": "60 requests and 20,000 tokens per minute per key; a minute lasts 6 s",
    "outage": "every request answered 503 from 1 s to 6 s after start (or reset)",
    "sloppy-json": "~19% of first JSON answers broken in JSON ways; re-prompts fail 5% of the time",
    "chaos": "everything at once: 5xx, 429s, resets, hangs, stalls, sloppy JSON, a short outage",
}


def profiles_markdown() -> str:
    """The profiles as a markdown table (for the README)."""
    rows = [f"| `{name}` | {doc} |" for name, doc in PROFILE_DOCS.items()]
    return "\n".join(["| profile | behaviour |", "|---|---|", *rows])


_PROFILE_OVERRIDES: dict[str, dict[str, Any]] = {
    "ideal": {},
    "flaky": {"fault_rates": _FLAKY_RATES, "retry_after_s": 0.5},
    "rate-limited": {"rpm": 60, "tpm": 20_000, "time_scale": 10.0, "retry_after_s": 0.5},
    "outage": {"outages": [OutageWindow(start_s=1.0, end_s=6.0, mode="503")]},
    "sloppy-json": {"fault_rates": _SLOPPY_RATES, "reprompt_failure_rate": 0.05},
    "chaos": {
        "fault_rates": {**_FLAKY_RATES, **_SLOPPY_RATES, **_CHAOS_EXTRA},
        "reprompt_failure_rate": 0.05,
        "retry_after_s": 0.5,
        "rpm": 600,
        "tpm": 200_000,
        "time_scale": 10.0,
        "hang_s": 5.0,
        "stall_s": 5.0,
        "outages": [OutageWindow(start_s=5.0, end_s=7.0, mode="refuse")],
    },
}

PROFILES: dict[str, SimulatorSettings] = {
    name: SimulatorSettings(**overrides) for name, overrides in _PROFILE_OVERRIDES.items()
}


def settings_for(profile: str = "ideal", **overrides: Any) -> SimulatorSettings:
    """Settings of `profile` with `overrides` applied.

    Raises:
        ValueError: unknown profile name or invalid override.
    """
    if profile not in PROFILES:
        raise ValueError(
            f"unknown simulator profile {profile!r}; choose one of {', '.join(PROFILES)}"
        )
    return PROFILES[profile].with_overrides(**overrides) if overrides else PROFILES[profile]
