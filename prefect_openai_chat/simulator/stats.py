"""What the simulator saw: counters only, so memory stays flat over a long run.

Example:
    >>> counters = Counters()
    >>> counters.record_status(200)
    >>> counters.snapshot().by_status
    {200: 1}
"""

from __future__ import annotations

import time

from pydantic import BaseModel, Field


class SimulatorStats(BaseModel):
    """A snapshot of the simulator's counters.

    Example:
        >>> SimulatorStats().requests
        0
    """

    requests: int = Field(default=0, description="Chat completion requests received.")
    by_status: dict[int, int] = Field(default_factory=dict, description="Answers by HTTP status.")
    by_fault: dict[str, int] = Field(
        default_factory=dict,
        description="Faults applied, by name; also `outage` and `rate-limit` (bucket 429s).",
    )
    tokens_by_key: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="Usage reported per API key: prompt and completion."
    )
    concurrent_peak: int = Field(default=0, description="Most requests in flight at once.")
    in_flight: int = Field(default=0, description="Requests in flight now.")
    reprompts: int = Field(default=0, description="JSON requests recognised as re-prompts.")
    rate_limited: dict[str, int] = Field(
        default_factory=dict,
        description="429s from the buckets by reason: `requests`, `tokens`, `too-large`.",
    )
    admitted: int = Field(
        default=0, description="Chat requests that passed the buckets and got a 2xx answer."
    )
    first_admitted_at: float | None = Field(
        default=None, description="Unix time (`time.time()`) of the first admitted request."
    )
    last_admitted_at: float | None = Field(
        default=None, description="Unix time (`time.time()`) of the last admitted request."
    )
    cached_tokens: int = Field(
        default=0, description="Prompt tokens reported as cached (chat requests and batch lines)."
    )
    files_uploaded: int = Field(default=0, description="Files uploaded to `/v1/files`.")
    files_deleted: int = Field(default=0, description="Files deleted on `/v1/files/{id}`.")
    files_stored: int = Field(
        default=0,
        description="Files the account holds now: uploaded and result files not deleted"
        " (kept across `reset()`, as the account keeps them).",
    )
    batches_created: int = Field(default=0, description="Batches created on `/v1/batches`.")
    batch_requests: int = Field(default=0, description="Batch lines answered (any status).")
    batch_tokens: dict[str, int] = Field(
        default_factory=dict, description="Usage of the batch lines: prompt, completion, cached."
    )

    @property
    def admitted_per_s(self) -> float | None:
        """Admitted requests per second from the first to the last one (None below two).

        Example:
            >>> stats = SimulatorStats(admitted=11, first_admitted_at=0.0, last_admitted_at=2.0)
            >>> stats.admitted_per_s
            5.0
        """
        first, last = self.first_admitted_at, self.last_admitted_at
        if self.admitted < 2 or first is None or last is None or last <= first:
            return None
        return (self.admitted - 1) / (last - first)

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens over all keys."""
        return sum(v["prompt"] for v in self.tokens_by_key.values())

    @property
    def completion_tokens(self) -> int:
        """Completion tokens over all keys."""
        return sum(v["completion"] for v in self.tokens_by_key.values())


class Counters:
    """The live counters behind `SimulatorStats`; touched only from the server's event loop."""

    def __init__(self) -> None:
        self.requests = 0
        self.by_status: dict[int, int] = {}
        self.by_fault: dict[str, int] = {}
        self.tokens_by_key: dict[str, list[int]] = {}
        self.concurrent_peak = 0
        self.in_flight = 0
        self.reprompts = 0
        self.rate_limited: dict[str, int] = {}
        self.admitted = 0
        self.first_admitted_at: float | None = None
        self.last_admitted_at: float | None = None
        self.cached_tokens = 0
        self.files_uploaded = 0
        self.files_deleted = 0
        self.batches_created = 0
        self.batch_requests = 0
        self.batch_tokens = {"prompt": 0, "completion": 0, "cached": 0}

    def enter(self) -> int:
        """Count a new request; return its index since the last reset."""
        index = self.requests
        self.requests += 1
        self.in_flight += 1
        if self.in_flight > self.concurrent_peak:
            self.concurrent_peak = self.in_flight
        return index

    def leave(self) -> None:
        """A request finished (its answer sent, or its connection dropped)."""
        self.in_flight -= 1

    def record_status(self, status: int) -> None:
        """Count an answer by status."""
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def record_fault(self, name: str) -> None:
        """Count an applied fault."""
        self.by_fault[name] = self.by_fault.get(name, 0) + 1

    def record_rate_limit(self, reason: str) -> None:
        """Count a 429 from the buckets (`requests`, `tokens` or `too-large`)."""
        self.record_fault("rate-limit")
        self.rate_limited[reason] = self.rate_limited.get(reason, 0) + 1

    def record_admitted(self) -> None:
        """Count a chat request that passed the buckets, with the time it did."""
        now = time.time()
        if self.first_admitted_at is None:
            self.first_admitted_at = now
        self.last_admitted_at = now
        self.admitted += 1

    def record_tokens(self, key: str, prompt: int, completion: int) -> None:
        """Add reported usage to `key`."""
        pair = self.tokens_by_key.get(key)
        if pair is None:
            pair = self.tokens_by_key[key] = [0, 0]
        pair[0] += prompt
        pair[1] += completion

    def snapshot(self) -> SimulatorStats:
        """A copy of the counters as `SimulatorStats`."""
        return SimulatorStats(
            requests=self.requests,
            by_status=dict(self.by_status),
            by_fault=dict(self.by_fault),
            tokens_by_key={
                k: {"prompt": v[0], "completion": v[1]} for k, v in list(self.tokens_by_key.items())
            },
            concurrent_peak=self.concurrent_peak,
            in_flight=self.in_flight,
            reprompts=self.reprompts,
            rate_limited=dict(self.rate_limited),
            admitted=self.admitted,
            first_admitted_at=self.first_admitted_at,
            last_admitted_at=self.last_admitted_at,
            cached_tokens=self.cached_tokens,
            files_uploaded=self.files_uploaded,
            files_deleted=self.files_deleted,
            batches_created=self.batches_created,
            batch_requests=self.batch_requests,
            batch_tokens=dict(self.batch_tokens),
        )
