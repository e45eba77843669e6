"""The record window: where every runner of a run writes its records' outcomes, in order.

`RecordWindow` owns a run's output and quarantine sinks and its totals. The online
runner (`flows/online.py`) and the Batch API runner (`flows/batch_api.py`) hand it
the records they read (`readable`: unreadable ones go to quarantine at once) and,
later, each record's `RecordOutcome` (`write`): valid rows to the output, the rest to
quarantine with the reason, every record counted once by where it was written.
`RunJob` is what every chunk of one run is asked to do.

Example:
    >>> from prefect_openai_chat.flows.window import quarantine_row
    >>> from prefect_openai_chat.flows.source_lines import SourceItem
    >>> quarantine_row(SourceItem(line=3, raw="{", error="bad JSON"), "3", None, "bad JSON")["outcome"]
    'unreadable'
"""  # noqa: E501

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect_openai_chat.blocks import ChatModel
from prefect_openai_chat.extraction.spec import ExtractionSpec
from prefect_openai_chat.flows.options import RunOptions
from prefect_openai_chat.flows.sinks import RowNotStorable, Sink
from prefect_openai_chat.flows.source_lines import SourceItem
from prefect_openai_chat.flows.summary import RunTotals
from prefect_openai_chat.results import RecordOutcome, bounded_reason


@dataclass(frozen=True)
class RunJob:
    """What every chunk of one run is asked to do: the model, the spec, the run's options,
    and the name of the concurrency gate its chunks share (`share_concurrency`)."""

    chat_model: ChatModel | str
    spec: ExtractionSpec
    run: RunOptions
    concurrency_pool: str


def quarantine_row(
    item: SourceItem, key: str, outcome: RecordOutcome | None, reason: str
) -> dict[str, Any]:
    """The quarantine row of a record: its reason, attempts, the record and the last answer."""
    return {
        "line": item.line,
        "key": key,  # the same key the output rows use (a chunk's own index would repeat)
        "reason": bounded_reason(reason),  # secrets masked, at most 4 KiB
        "outcome": outcome.outcome if outcome else item.kind,
        "attempts": outcome.calls if outcome else 0,  # chat completions made for it
        "record": item.record if item.record is not None else item.raw,
        "last_raw_output": outcome.last_raw_output if outcome else None,
    }


class RecordWindow:
    """A run's sinks and totals; records are written through it, in the order given.

    Args:
        rows: The output sink (valid rows).
        bad: The quarantine sink.
        totals: The run's totals, counted as records are written.
        on_progress: Called after each written group of records.
        keep_rows: Keep the valid rows in memory (`kept`), for `return_rows`.
    """

    def __init__(
        self,
        rows: Sink,
        bad: Sink,
        totals: RunTotals,
        on_progress: Callable[[], Any],
        keep_rows: bool = False,
    ) -> None:
        self.rows, self.bad, self.totals = rows, bad, totals
        self.on_progress = on_progress
        self.kept: list[dict[str, Any]] | None = [] if keep_rows else None

    def readable(self, items: list[SourceItem]) -> list[SourceItem]:
        """The records that parsed; the others go to quarantine now."""
        for item in items:
            if item.record is None:
                reason = item.error or "unreadable"
                self.totals.add(
                    RecordOutcome(index=item.line, key=item.key, ok=False, reason=reason)
                )
                self.totals.add_quarantined(item.line, item.key, reason)
                self.bad.write(quarantine_row(item, item.key, None, reason))
        return [item for item in items if item.record is not None]

    def write(self, readable: list[SourceItem], outcomes: list[RecordOutcome]) -> None:
        """Write each record's row: valid rows to the output, the others to quarantine.

        A valid row the output cannot hold (`RowNotStorable`, e.g. a ledger entry stored
        `ok` before the storable-value rule) goes to quarantine with the reason instead:
        it is counted once, by where it was written.
        """
        for item, outcome in zip(readable, outcomes, strict=True):
            key = item.key
            if outcome.ok:
                outcome = self._write_row(key, outcome)
            self.totals.add(outcome)
            if not outcome.ok:
                reason = outcome.reason or outcome.outcome
                self.totals.add_quarantined(item.line, key, reason)
                self.bad.write(quarantine_row(item, key, outcome, reason))
        self.on_progress()

    def check_exactly_once(self) -> None:
        """Raise when the records counted in differ from the rows written out."""
        totals, rows, bad = self.totals, self.rows, self.bad
        if totals.records != rows.rows + bad.rows or rows.rows != totals.valid:
            raise RuntimeError(
                f"bookkeeping error: {totals.records} records in, {rows.rows} written and"
                f" {bad.rows} quarantined; the output files were not replaced"
            )

    def _write_row(self, key: str, outcome: RecordOutcome) -> RecordOutcome:
        """The outcome after writing its row: itself, or `invalid` when the row is refused."""
        row = {"_key": key, **(outcome.value or {})}
        try:
            self.rows.write(row)
        except RowNotStorable as exc:
            return outcome.model_copy(
                update={"ok": False, "outcome": "invalid", "reason": f"not storable: {exc}"}
            )
        if self.kept is not None:
            self.kept.append(row)
        return outcome
