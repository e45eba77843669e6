"""The sections of a `ChatModel` block: timeouts, retries, circuit and limits.

Each section is a nested form in the Prefect UI (as prefect-aws nests
`AwsClientParameters` in `AwsCredentials`). A default that the core also has is read from
the core (`RetryPolicy`, `CircuitSettings`, the retry budget), never written twice.

A block saved before the sections existed has the same settings as flat fields
(`max_attempts`, `circuit_failures`, ...): `nest_flat_fields` moves them into their sections,
which `ChatModel` does, with a `DeprecationWarning`, whenever such a block is loaded.

Example:
    >>> from prefect_openai_chat.blocks.sections import Retries, nest_flat_fields
    >>> Retries().max_attempts
    4
    >>> nest_flat_fields({"model": "gpt-4o-mini", "max_attempts": 2, "circuit_failures": 3})
    {'model': 'gpt-4o-mini', 'retries': {'max_attempts': 2}, 'circuit': {'failures': 3}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import openai
from pydantic import BaseModel, ConfigDict, Field, field_validator

from prefect_openai_chat.resilience import build_verdicts
from prefect_openai_chat.resilience.budget import DEFAULT_RATIO
from prefect_openai_chat.resilience.circuit import CircuitSettings
from prefect_openai_chat.resilience.policy import MAX_TASK_RETRIES, RetryPolicy

_POLICY = RetryPolicy()
_CIRCUIT = CircuitSettings()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt setting is an error, not ignored


class Timeouts(_Section):
    """How long each part of a call may take."""

    connect_s: float = Field(default=5.0, gt=0, description="Seconds to open a connection.")
    read_s: float = Field(
        default=120.0,
        gt=0,
        description="Seconds to wait for the response, or for a stream's next chunk.",
    )
    write_s: float = Field(default=30.0, gt=0, description="Seconds to send the request.")
    pool_s: float = Field(
        default=30.0, gt=0, description="Seconds to wait for a free pooled connection."
    )
    attempt_s: float | None = Field(
        default=None,
        gt=0,
        description="Seconds one HTTP attempt may take in all (a trickling server resets the"
        " read timeout with every byte); empty: 2 x read_s + connect_s.",
    )
    call_s: float | None = Field(
        default=600.0,
        gt=0,
        description="Seconds one logical call may take, retries included; empty: no limit.",
    )

    @property
    def attempt_deadline_s(self) -> float:
        """`attempt_s`, or 2 x read_s + connect_s when it is empty.

        Example:
            >>> Timeouts(read_s=10, connect_s=1).attempt_deadline_s
            21.0
        """
        if self.attempt_s is not None:
            return self.attempt_s
        return 2 * self.read_s + self.connect_s

    def for_client(self) -> openai.Timeout:
        """The split timeouts as an `openai.Timeout`."""
        return openai.Timeout(
            connect=self.connect_s, read=self.read_s, write=self.write_s, pool=self.pool_s
        )


class Retries(_Section):
    """The in-call tier (attempts, waits, the retry budget) and the task tier."""

    max_attempts: int = Field(
        default=_POLICY.max_attempts,
        ge=1,
        le=100,
        description="HTTP attempts per call within one task run, the first included.",
    )
    backoff_base_s: float = Field(
        default=_POLICY.backoff_base,
        ge=0,
        description="The first full-jitter backoff window, in seconds.",
    )
    backoff_cap_s: float = Field(
        default=_POLICY.backoff_cap, ge=0, description="The largest backoff window, in seconds."
    )
    retry_after_cap_s: float = Field(
        default=_POLICY.retry_after_cap,
        ge=0,
        description="The longest Retry-After the server may ask for, in seconds.",
    )
    task_retries: int = Field(
        default=_POLICY.task_retries,
        ge=0,
        le=MAX_TASK_RETRIES,
        description="Task re-runs for errors that outlast the in-call retries, 0 to 10.",
    )
    error_overrides: dict[str, str] = Field(
        default_factory=dict,
        description="Error-table rows mapped to another action, such as {'409': 'fail'}.",
    )
    budget_ratio: float = Field(
        default=DEFAULT_RATIO,
        ge=0,
        le=1,
        description="The largest share of requests that may be retries.",
    )

    @field_validator("error_overrides")
    @classmethod
    def _known_rows(cls, value: dict[str, str]) -> dict[str, str]:
        build_verdicts(value)  # a clear ValueError naming the unknown row or action
        return value


class Circuit(_Section):
    """When an endpoint counts as down, and how long calls wait for it."""

    failures: int = Field(
        default=_CIRCUIT.fail_max,
        ge=1,
        description="Consecutive outage errors that open the circuit.",
    )
    reset_timeout_s: float = Field(
        default=_CIRCUIT.reset_timeout_s,
        gt=0,
        description="Seconds an open circuit waits before one probe call (and the task tier"
        " before running a task again).",
    )
    successes: int = Field(
        default=_CIRCUIT.success_threshold,
        ge=1,
        description="Successful probes needed to close the circuit again.",
    )
    outage_patience_s: float = Field(
        default=_POLICY.outage_patience_s,
        ge=0,
        description="How long, from when the circuit opened, calls wait for its probe; past"
        " it they fail at once (no task retries) until a probe succeeds.",
    )

    def settings(self) -> CircuitSettings:
        """The core's circuit settings."""
        return CircuitSettings(self.failures, self.reset_timeout_s, self.successes)


class Limits(_Section):
    """How much is sent: caps on the learned rate limits, and the connection pool."""

    requests_per_minute: int | None = Field(
        default=None, gt=0, description="A cap on requests per minute (empty: what the API says)."
    )
    tokens_per_minute: int | None = Field(
        default=None,
        gt=0,
        description="A cap on tokens per minute, prompt plus room (empty: what the API says).",
    )
    rate_limit_patience_s: float = Field(
        default=_POLICY.rate_limit_patience_s,
        ge=0,
        description="The longest one call waits out 429 rate_limit_exceeded answers, in seconds;"
        " they count neither against max_attempts nor the retry budget.",
    )
    max_connections: int = Field(
        default=100, ge=1, description="The size of the HTTP connection pool per client."
    )


SECTIONS: dict[str, type[_Section]] = {
    "timeouts": Timeouts,
    "retries": Retries,
    "circuit": Circuit,
    "limits": Limits,
}

# The flat fields of blocks saved before the sections: (section, name in the section).
FLAT_FIELDS: dict[str, tuple[str, str]] = {
    "connect_timeout_s": ("timeouts", "connect_s"),
    "read_timeout_s": ("timeouts", "read_s"),
    "write_timeout_s": ("timeouts", "write_s"),
    "pool_timeout_s": ("timeouts", "pool_s"),
    "attempt_timeout_s": ("timeouts", "attempt_s"),
    "call_timeout_s": ("timeouts", "call_s"),
    "max_attempts": ("retries", "max_attempts"),
    "backoff_base_s": ("retries", "backoff_base_s"),
    "backoff_cap_s": ("retries", "backoff_cap_s"),
    "retry_after_cap_s": ("retries", "retry_after_cap_s"),
    "task_retries": ("retries", "task_retries"),
    "error_overrides": ("retries", "error_overrides"),
    "retry_budget_ratio": ("retries", "budget_ratio"),
    "circuit_failures": ("circuit", "failures"),
    "circuit_reset_timeout_s": ("circuit", "reset_timeout_s"),
    "circuit_successes": ("circuit", "successes"),
    "outage_patience_s": ("circuit", "outage_patience_s"),
    "requests_per_minute": ("limits", "requests_per_minute"),
    "tokens_per_minute": ("limits", "tokens_per_minute"),
    "rate_limit_patience_s": ("limits", "rate_limit_patience_s"),
    "max_connections": ("limits", "max_connections"),
}
# Renamed without a section: the old name is used only when the new one is empty.
RENAMED = {"circuit_redis_url": "redis_url"}


def flat_fields_in(data: Mapping[str, Any]) -> list[str]:
    """The old flat field names `data` holds."""
    return [name for name in data if name in FLAT_FIELDS or name in RENAMED]


def nest_flat_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` with every old flat field moved into its section.

    A setting given both ways with two different values is an error: which one is meant
    cannot be told.

    Example:
        >>> nest_flat_fields({"circuit_redis_url": "redis://h/0", "circuit": {"failures": 2},
        ...                   "max_attempts": 3})
        {'circuit': {'failures': 2}, 'redis_url': 'redis://h/0', 'retries': {'max_attempts': 3}}
    """
    nested = {name: value for name, value in data.items() if name not in flat_fields_in(data)}
    for old, new in RENAMED.items():
        if old in data and not nested.get(new):
            nested[new] = data[old]
    for old, (section, name) in FLAT_FIELDS.items():
        if old not in data:
            continue
        current = nested.get(section)
        if isinstance(current, BaseModel):
            current = current.model_dump(exclude_unset=True)
        current = dict(current or {})
        if name in current and current[name] != data[old]:
            raise ValueError(
                f"{old}={data[old]!r} (the old flat layout) and {section}.{name}="
                f"{current[name]!r} disagree; keep only {section}.{name} and save the block"
                f" again: ChatModel(..., {section}={{{name!r}: ...}}).save(NAME, overwrite=True)"
            )
        current[name] = data[old]
        nested[section] = current
    return nested
