"""The result models' public surface: computed totals in dumps, the two counts named apart."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from prefect_openai_chat import BatchReport, ChatResult, Extraction, RecordOutcome, Usage


class City(BaseModel):
    name: str


def test_derived_totals_are_in_the_dump_and_ignored_when_read_back() -> None:
    usage = Usage(prompt_tokens=7, completion_tokens=3)
    assert usage.model_dump()["total_tokens"] == 10
    report = BatchReport(
        records=[
            RecordOutcome(
                index=0, key="a", ok=True, value={"name": "Oslo"}, usage=usage, cost_usd=0.5
            ),
            RecordOutcome(index=1, key="b", ok=False, outcome="invalid", usage=usage),
        ]
    )
    dumped = report.model_dump(mode="json")
    assert (dumped["total"], dumped["valid"], dumped["failed"]) == (2, 1, 1)
    assert dumped["usage"]["total_tokens"] == 20 and dumped["cost_usd"] == 0.5
    assert BatchReport.model_validate_json(report.model_dump_json()) == report


def test_http_attempts_and_calls_are_named_apart_and_the_old_name_still_reads() -> None:
    result = ChatResult(content="hi", http_attempts=3)
    extraction = Extraction[City](value=City(name="Oslo"), ok=True, outcome="ok", calls=2)
    assert "attempts" not in result.model_dump() and result.model_dump()["http_attempts"] == 3
    assert extraction.model_dump()["calls"] == 2
    with pytest.warns(DeprecationWarning, match="use http_attempts"):
        assert result.attempts == 3
    with pytest.warns(DeprecationWarning, match="use calls"):
        assert extraction.attempts == 2
    # what was stored under the old name (a record cache, a persisted result) still loads
    old = RecordOutcome.model_validate_json('{"index": 0, "key": "a", "ok": true, "attempts": 4}')
    assert old.calls == 4


def test_a_record_outcome_value_rebuilds_the_schema_object() -> None:
    outcome = RecordOutcome(
        index=0, key="a", ok=True, value=City(name="Oslo").model_dump(mode="json")
    )
    assert City.model_validate(outcome.value) == City(name="Oslo")


def test_a_ledger_entry_stored_before_429s_were_counted_still_loads() -> None:
    """`http_429s` defaults to 0: an older entry is a record served, not an unreadable one."""
    from prefect_openai_chat.extraction.outcomes import cached_outcome

    old = '{"index": 4, "key": "T-1", "ok": true, "outcome": "ok", "value": {"name": "Oslo"}}'
    served = cached_outcome(old, 0, "T-1")
    assert (served.ok, served.cached, served.http_429s) == (True, True, 0)
    assert RecordOutcome(index=0, key="a", ok=True, http_429s=3).model_dump()["http_429s"] == 3


def test_an_extraction_dumps_its_value_once() -> None:
    class Point(BaseModel):
        x: int

    done = Extraction[Point](value=Point(x=1), ok=True, outcome="ok")
    assert done.value_data() == {"x": 1}
    assert done.value_data() is done.value_data()  # kept: record_outcome does not dump again
    assert Extraction[Point]().value_data() is None


def test_a_record_outcome_is_the_model_its_fields_validate_to() -> None:
    """`record_outcome` builds its `RecordOutcome` without validating again: it must be
    the one that validating the same fields gives, secrets masked and sizes capped."""
    from prefect_openai_chat.extraction.outcomes import record_outcome
    from prefect_openai_chat.results import RAW_OUTPUT_LIMIT, REASON_LIMIT

    key = "sk-" + "a" * 40
    raw = f'{{"name": "Oslo", "note": "{key}"}}' + " " * (RAW_OUTPUT_LIMIT + 10)
    for extraction in (
        Extraction[City](value=City(name="Oslo"), ok=True, outcome="ok", raw_outputs=[raw]),
        Extraction[City](outcome="invalid", reason=f"{key} " + "x" * REASON_LIMIT, calls=3),
    ):
        outcome = record_outcome(7, "T-7", extraction)
        validated = RecordOutcome.model_validate(outcome.model_dump())
        assert outcome == validated
        assert outcome.model_dump_json() == validated.model_dump_json()
        kept = (outcome.last_raw_output or "") + (outcome.reason or "")
        assert key not in kept and len(kept.encode()) < RAW_OUTPUT_LIMIT + REASON_LIMIT + 400
