"""`extract_records(shards=N)` on the flow's own task runner: the same files as one run.

The shards run as tasks in threads of the test process (the default task runner), so
these tests check the splitting, the parts and the merge without a work pool: every
line once, in input order, duplicates across shards quarantined as an unsharded run
quarantines them, and a re-run pays nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from model_support import fast_model
from scale_out_support import PROMPT, SCHEMA, LoggedSimulator, read_jsonl, write_records

from prefect_openai_chat import ExtractionSpec, RunOptions
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.flows import extract_records


@pytest.fixture(autouse=True)
def _harness(isolated_results: None) -> None:
    """The session's Prefect test API; task results and the record cache per test."""


@pytest.fixture
def sim() -> Iterator[LoggedSimulator]:
    with LoggedSimulator(profile="ideal", seed=5) as simulator:
        yield simulator


def messy_source(path: Path) -> Path:
    """60 records, then a malformed line, a repeat of record 3's key, and 5 more records."""
    write_records(path, 66)
    lines = path.read_text(encoding="utf-8").splitlines()
    repeat = json.loads(lines[2])
    repeat["subject"] = "[R99999] the same key again"
    lines[40:40] = ["{not json", json.dumps(repeat)]  # both in the last shard of three
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(source: Path, out: Path, sim: LoggedSimulator, **options: Any) -> dict[str, Any]:
    result: dict[str, Any] = extract_records(
        source=str(source),
        schema=SCHEMA,
        chat_model=fast_model(sim.base_url, sim.api_key),
        prompt=PROMPT,
        output=str(out / "rows.jsonl"),
        quarantine=str(out / "quarantine.jsonl"),
        key_field="ticket_id",
        batch_size=8,
        concurrency=4,
        cache=str(out.parent / "cache.sqlite"),
        **options,
    )
    return result


def test_shards_write_what_one_run_writes(sim: LoggedSimulator, tmp_path: Path) -> None:
    source = messy_source(tmp_path / "in.jsonl")
    whole = run(source, tmp_path / "one", sim)
    sharded = run(source, tmp_path / "three", sim, shards=3)

    assert sharded["records"] == whole["records"] == 68
    assert (sharded["valid"], sharded["quarantined"]) == (whole["valid"], whole["quarantined"])
    assert sharded["shards"] == 3
    assert sharded["duplicate_keys"] == 1
    assert sharded["from_cache"] == 66  # the unsharded run paid for every record already
    one, three = tmp_path / "one", tmp_path / "three"
    assert read_jsonl(three / "rows.jsonl") == read_jsonl(one / "rows.jsonl")  # same order too
    assert read_jsonl(three / "quarantine.jsonl") == read_jsonl(one / "quarantine.jsonl")
    reasons = [row["reason"] for row in read_jsonl(three / "quarantine.jsonl")]
    assert any("duplicate key 'T00003'" in reason for reason in reasons)
    assert any("malformed JSON" in reason for reason in reasons)
    assert not list(three.glob(".rows.jsonl.shards-*"))  # the parts are gone
    assert not sim.log.paid_twice()


@pytest.mark.slow  # ~10 s: started early, not last
def test_a_rerun_of_shards_pays_nothing(sim: LoggedSimulator, tmp_path: Path) -> None:
    source = write_records(tmp_path / "in.jsonl", 30)
    first = run(source, tmp_path / "a", sim, shards=4)
    before = len(sim.log.requests)
    again = run(source, tmp_path / "a", sim, shards=4)
    assert first["valid"] == again["valid"] == 30
    assert again["from_cache"] == 30
    assert len(sim.log.requests) == before


def test_shards_need_a_file(sim: LoggedSimulator, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"shards need a \.jsonl or \.csv file"):
        extract_records(
            source=[{"subject": "a", "body": "b"}],
            output=str(tmp_path / "rows.jsonl"),
            quarantine=str(tmp_path / "q.jsonl"),
            spec=ExtractionSpec(
                schema=SCHEMA,
                prompt=PROMPT,
            ),
            chat_model=fast_model(sim.base_url, sim.api_key),
            run=RunOptions(
                shards=2,
            ),
        )
