"""A record's `RecordOutcome` from its `Extraction`: what every runner writes and stores,
and `ledger_phrase`, the words every log line uses for the records the ledger answered.

Example:
    >>> from prefect_openai_chat.extraction.outcomes import failed_outcome
    >>> failed_outcome(3, "T-1", "skipped", "no subject").outcome
    'skipped'
"""

from __future__ import annotations

from typing import Any

from prefect_openai_chat.extraction.storable import unstorable
from prefect_openai_chat.results import Extraction, Outcome, RecordOutcome, bounded_reason


def record_outcome(index: int, key: str, extraction: Extraction[Any]) -> RecordOutcome:
    """The `RecordOutcome` of one record's extraction.

    A valid value that no output could hold (`extraction.storable`: an integer beyond
    64 bits, a NaN) is made `invalid` here with the reason, before the ledger stores
    it: never `ok`. `run_extraction` re-asks such answers already; this is the check
    for every other way an `ok` could arrive.
    """
    data = extraction.value_data()
    ok, outcome, reason = extraction.ok, extraction.outcome, extraction.reason
    unfit = unstorable(data) if ok else None
    if unfit is not None:
        ok, outcome, reason, data = False, "invalid", bounded_reason(f"not storable: {unfit}"), None
    # Built without validating again: every field comes from a validated `Extraction`
    # (its reason and raw outputs redacted and capped already) or is the caller's int/str.
    return RecordOutcome.model_construct(
        index=index,
        key=key,
        ok=ok,
        value=data,
        outcome=outcome,
        reason=reason,
        calls=extraction.calls,
        retries=extraction.retries,
        http_429s=extraction.http_429s,
        repaired=extraction.repaired,
        reprompts=extraction.reprompts,
        usage=extraction.usage,
        cost_usd=extraction.cost_usd,
        latency_s=extraction.latency_s,
        last_raw_output=extraction.raw_outputs[-1] if extraction.raw_outputs else None,
    )


def unexpected_reason(exc: BaseException, what: str) -> str:
    """Why a record ended when its own path raised `exc`, something nobody foresaw.

    Example:
        >>> unexpected_reason(TypeError("bad"), "not sent")
        'this record failed unexpectedly (TypeError: bad); not sent, tried again next run'
    """
    return (
        f"this record failed unexpectedly ({type(exc).__name__}: {str(exc)[:300]}); {what},"
        " tried again next run"
    )


def failed_outcome(index: int, key: str, outcome: Outcome, reason: str) -> RecordOutcome:
    """The outcome of a record that ends without an extraction (skipped, not sent)."""
    return RecordOutcome(index=index, key=key, ok=False, outcome=outcome, reason=reason)


def cached_outcome(stored: str, index: int, key: str) -> RecordOutcome:
    """A record's outcome as the record ledger stored it, placed at `index` under `key`.

    An entry that cannot be read (a ledger edited by hand, a version of the plugin that
    stored something else) costs that record, as an `error` saying so.
    """
    try:
        hit = RecordOutcome.model_validate_json(stored)
    except ValueError as exc:
        reason = (
            f"its entry in the record ledger cannot be read ({type(exc).__name__}:"
            f" {str(exc)[:300]}); delete that entry (or use another ledger) to ask again"
        )
        return failed_outcome(index, key, "error", reason)
    return hit.model_copy(update={"index": index, "key": key, "cached": True})


def ledger_phrase(from_ledger: int, records: int) -> str:
    """How many records the record ledger answered, in words for logs and artifacts.

    >>> ledger_phrase(300, 300)
    '300 from the ledger (all of them: answered by an earlier run, no call, no cost)'
    >>> ledger_phrase(0, 5)
    '0 from the ledger'
    """
    if not from_ledger:
        return "0 from the ledger"
    share = "all of them" if from_ledger == records else f"{from_ledger} of {records}"
    return f"{from_ledger} from the ledger ({share}: answered by an earlier run, no call, no cost)"
