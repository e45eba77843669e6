"""What a night's parameters leave in the Prefect API: the run's page must stay readable.

A record of a source list holding an integer beyond 64 bits is stored by the Prefect API
as it is, after which Prefect 3.9.0 (and earlier) fails every listing of flow runs that
includes that run (`/flow_runs/filter`: "Integer exceeds 64-bit range"), the UI's runs
page with it. Found by CI, where pip had resolved Prefect 3.9.0 and the fuzz's iterable
sources had left such runs in the session's API.
"""

from __future__ import annotations

from pathlib import Path

from flow_defects_support import run_flow
from flow_support import read_jsonl, sample_tickets
from prefect import get_client

from prefect_openai_chat import ChatModel
from prefect_openai_chat.flows.source_flow import api_safe


def test_a_record_holding_a_huge_integer_leaves_the_flow_runs_listable(
    chat_model: ChatModel, tmp_path: Path
) -> None:
    records = sample_tickets(2)
    records[0] = {**records[0], "order_number": 2**70, "small": -(2**63)}
    summary = run_flow(records, chat_model, tmp_path)
    assert summary["records"] == 2 == summary["valid"]

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200)  # the listing the UI's runs page makes
        ours = [r for r in runs if r.parameters.get("output") == str(tmp_path / "out.jsonl")]
    assert len(ours) == 1
    shown = ours[0].parameters["source"][0]
    assert shown["order_number"] == "1180591620717411303424"  # its digits, as text
    assert shown["small"] == -(2**63)  # what 64 bits hold stays a number
    # and the night ran over both records
    assert [row["_key"] for row in read_jsonl(tmp_path / "out.jsonl")] == [
        str(r["ticket_id"]) for r in records
    ]


def test_an_integer_too_long_for_text_leaves_the_night_running(
    chat_model: ChatModel, tmp_path: Path
) -> None:
    """Python refuses str() of an integer past 4,300 digits: the run's page shows it short."""
    records = sample_tickets(2)
    records[1] = {**records[1], "checksum": 10**5000}
    summary = run_flow(records, chat_model, tmp_path)
    assert summary["records"] == 2 == summary["valid"]

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200)
        ours = [r for r in runs if r.parameters.get("output") == str(tmp_path / "out.jsonl")]
    assert ours[0].parameters["source"][1]["checksum"] == "an integer of 16610 bits"


def test_the_walk_over_the_parameters_has_no_depth_limit() -> None:
    """A loop, not recursion: a source nested deeper than Python's recursion limit passes.

    (An iterable source's records deeper than 64 levels are set aside before Prefect sees
    them; a parameter of another flow built on `SourceFlow` is not.)
    """
    deep: object = 2**70
    for _ in range(5000):
        deep = [deep]
    shown = api_safe({"source": deep})["source"]
    for _ in range(5000):
        (shown,) = shown
    assert shown == "1180591620717411303424"
