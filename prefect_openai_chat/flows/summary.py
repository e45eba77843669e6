"""Run totals for `extract_records`, and the Prefect artifacts that show them in the UI.

Every cell of an artifact table passes the redaction boundary: secrets masked, at most
`ARTIFACT_CELL_LIMIT` bytes (with a marker saying how much was cut).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from prefect_openai_chat.extraction.outcomes import ledger_phrase
from prefect_openai_chat.flows.sources import Keys
from prefect_openai_chat.redaction import bounded_text
from prefect_openai_chat.results import RecordOutcome
from prefect_openai_chat.tasks import run_logger

QUARANTINE_TABLE_ROWS = 200
LATENCY_SAMPLE = 20_000  # latencies kept for the percentiles: every one up to this many
ARTIFACT_CELL_LIMIT = 500  # bytes of UTF-8 shown in one cell of an artifact table
PROGRESS_EVERY_S = 1.0  # the progress artifact moves at most this often


_PROGRESS_LISTENERS: list[Callable[[int, int | None], None]] = []


@contextmanager
def progress_listener(listener: Callable[[int, int | None], None]) -> Iterator[None]:
    """Call `listener(done, total)` whenever a run in this process moves its progress
    artifact (the `extract` command's progress bar)."""
    _PROGRESS_LISTENERS.append(listener)
    try:
        yield
    finally:
        _PROGRESS_LISTENERS.remove(listener)


def summary_line(summary: dict[str, Any], shards: int | None = None) -> str:
    """The run's one log line; says how many records came from the ledger.

    >>> summary_line({"records": 3, "valid": 3, "quarantined": 0, "from_cache": 0,
    ...               "total_tokens": 40, "cost_usd": 0.0001, "wall_time_s": 1.25})[17:]
    '3 records, 3 valid, 0 quarantined, 0 from the ledger, 40 new tokens, $0.0001, 1.2s'
    """
    where = f" in {shards} shards" if shards else ""
    return (
        f"extract-records: {summary['records']} records, {summary['valid']} valid,"
        f" {summary['quarantined']} quarantined{where},"
        f" {ledger_phrase(summary['from_cache'], summary['records'])},"
        f" {summary['total_tokens']} new tokens,"
        f" ${summary['cost_usd'] or 0.0:.4f}, {summary['wall_time_s']:.1f}s"
    )


def cell(value: Any) -> str:
    """A table cell: the value as text, secrets masked, at most `ARTIFACT_CELL_LIMIT` bytes."""
    return bounded_text("" if value is None else str(value), ARTIFACT_CELL_LIMIT, "the cell")


@dataclass
class RunTotals:
    """What a run did, record by record, kept small: counters and latencies only.

    The latencies are every record's up to `LATENCY_SAMPLE` of them, then a uniform
    sample of that many (reservoir sampling, seeded): the percentiles of a million-record
    night come from 20,000 latencies, and its memory does not grow with its records.

    A record from the ledger counts in `records`, `valid` or `quarantined` and
    `from_cache`, and in nothing that says what was done tonight (tokens, cost,
    re-asks, repairs, retries, 429s, latencies): an earlier run did that.

    Example:
        >>> from prefect_openai_chat.results import RecordOutcome
        >>> totals = RunTotals()
        >>> totals.add(RecordOutcome(index=0, key="a", ok=True, reprompts=1, http_429s=2))
        >>> totals.add(RecordOutcome(index=1, key="b", ok=True, reprompts=1, cached=True))
        >>> totals.reprompted, totals.http_429s, totals.from_cache
        (1, 2, 1)
    """

    records: int = 0
    valid: int = 0
    quarantined: int = 0
    repaired: int = 0
    reprompted: int = 0
    from_cache: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cached_tokens: int = 0
    batch_records: int = 0
    online_cost_usd: float = 0.0
    retries: int = 0
    http_429s: int = 0
    circuit_trips: int = 0
    duplicate_keys: int = 0
    missing_keys: int = 0
    latencies: list[float] = field(default_factory=list)
    latencies_seen: int = 0
    _sampler: random.Random = field(default_factory=lambda: random.Random(0), repr=False)
    quarantine_rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, outcome: RecordOutcome) -> None:
        """Count one record's outcome."""
        self.records += 1
        if outcome.ok:
            self.valid += 1
        else:
            self.quarantined += 1
        self.from_cache += outcome.cached
        if not outcome.cached:  # a ledger entry's work was an earlier run's, not tonight's
            self.repaired += outcome.repaired
            self.reprompted += outcome.reprompts > 0
            self.prompt_tokens += outcome.usage.prompt_tokens
            self.completion_tokens += outcome.usage.completion_tokens
            self.cost_usd += outcome.cost_usd or 0.0
            self.cached_tokens += outcome.usage.cached_tokens
            self.batch_records += outcome.via == "batch"
            online = outcome.online_cost_usd
            self.online_cost_usd += (outcome.cost_usd or 0.0) if online is None else online
            self.retries += outcome.retries
            self.http_429s += outcome.http_429s
            if outcome.calls:
                self._sample(outcome.latency_s)

    def _sample(self, latency: float) -> None:
        """Keep `latency` in the bounded sample of the run's latencies."""
        self.latencies_seen += 1
        if len(self.latencies) < LATENCY_SAMPLE:
            self.latencies.append(latency)
            return
        slot = self._sampler.randrange(self.latencies_seen)
        if slot < LATENCY_SAMPLE:
            self.latencies[slot] = latency

    def add_quarantined(self, line: int | None, key: str, reason: str | None) -> None:
        """Keep the first rows of the quarantine table for the UI."""
        if len(self.quarantine_rows) < QUARANTINE_TABLE_ROWS:
            row = {"line": line, "key": cell(key), "reason": cell(reason)}
            self.quarantine_rows.append(row)

    def count_keys(self, keys: Keys) -> None:
        """Take the key counts of the run's source, and warn about them in the run's log."""
        self.duplicate_keys, self.missing_keys = keys.duplicates, keys.missing
        if keys.duplicates:
            run_logger().warning(
                "%d records repeat a %r seen before: each is in quarantine with reason"
                " 'duplicate key', the first record with that key is the one kept",
                keys.duplicates,
                keys.field,
            )
        if keys.missing:
            run_logger().warning(
                "%d records have no %r: they are keyed by their line (a CSV: record) number",
                keys.missing,
                keys.field,
            )

    def percentile(self, q: float) -> float | None:
        """The q-th latency percentile in seconds (None without API calls)."""
        if not self.latencies:
            return None
        if len(self.latencies) == 1:
            return self.latencies[0]
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(q) - 1]

    def as_dict(self) -> dict[str, Any]:
        """The flow's return value (without the per-record lists)."""
        p50, p95 = self.percentile(50), self.percentile(95)
        return {
            "records": self.records,
            "valid": self.valid,
            "quarantined": self.quarantined,
            "repaired": self.repaired,
            "reprompted": self.reprompted,
            "from_cache": self.from_cache,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "cached_tokens": self.cached_tokens,
            "batch_records": self.batch_records,
            "online_cost_usd": round(self.online_cost_usd, 6),
            "p50_latency_s": None if p50 is None else round(p50, 4),
            "p95_latency_s": None if p95 is None else round(p95, 4),
            "retries": self.retries,
            "http_429s": self.http_429s,
            "circuit_trips": self.circuit_trips,
            "duplicate_keys": self.duplicate_keys,
            "missing_keys": self.missing_keys,
        }


class RunArtifacts:
    """The progress bar, the summary table and the quarantine table of one run."""

    def __init__(self, key_prefix: str = "extract-records") -> None:
        self.prefix = key_prefix
        self.progress_id: UUID = create_progress_artifact(  # type: ignore[assignment]
            0.0, key=f"{key_prefix}-progress", description="Records processed so far."
        )
        self._moved_at = -PROGRESS_EVERY_S  # the first group moves it at once

    def progress(self, done: int, total: int | None) -> None:
        """Move the progress artifact (a percentage), at most once per `PROGRESS_EVERY_S`:
        each move is a call to the Prefect API, and a night writes a group of records every
        few milliseconds (`finish` moves it to 100%). In-process listeners hear of each."""
        now = time.monotonic()
        if total and now - self._moved_at >= PROGRESS_EVERY_S:
            self._moved_at = now
            update_progress_artifact(self.progress_id, min(100.0, 100.0 * done / total))
        for listener in list(_PROGRESS_LISTENERS):
            listener(done, total)

    def finish(self, totals: RunTotals, extra: dict[str, Any]) -> None:
        """Write the summary table and the quarantine table."""
        update_progress_artifact(self.progress_id, 100.0)
        summary = {**totals.as_dict(), **extra}
        create_table_artifact(
            [{"metric": k, "value": cell(v)} for k, v in summary.items()],
            key=f"{self.prefix}-summary",
            description="What the run did: records, outcomes, tokens, cost, latency, retries;"
            f" {ledger_phrase(totals.from_cache, totals.records)} (the `from_cache` row).",
        )
        if totals.quarantine_rows:
            create_table_artifact(
                totals.quarantine_rows,
                key=f"{self.prefix}-quarantine",
                description=f"Quarantined records and why (first {QUARANTINE_TABLE_ROWS}).",
            )
        else:
            create_markdown_artifact(
                "No record was quarantined.",
                key=f"{self.prefix}-quarantine",
                description="Quarantined records and why.",
            )
