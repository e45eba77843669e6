"""triage_then_extract: classify, route, extract per class, write one file per class."""

from __future__ import annotations

import json
from pathlib import Path

from flow_support import sample_tickets, write_jsonl

from prefect_openai_chat import ChatModel
from prefect_openai_chat.flows.triage import triage_then_extract
from prefect_openai_chat.simulator import Simulator


def test_every_ticket_ends_in_exactly_one_file(
    chat_model: ChatModel, fresh_sim: Simulator, tmp_path: Path
) -> None:
    tickets = sample_tickets(24)
    tickets.append({"ticket_id": "T-EMPTY", "subject": "hi", "body": "   "})
    source = write_jsonl(tmp_path / "in.jsonl", [*tickets, "{not json"])
    out = tmp_path / "triage"

    counts = triage_then_extract(str(source), chat_model, str(out))

    assert counts["unreadable"] == {"valid": 0, "quarantined": 2}  # the empty body, the bad line
    assert sum(c["valid"] + c["quarantined"] for c in counts.values()) == 26
    keys: list[str] = []
    for path in out.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            keys.append(row.get("_key") or row.get("key") or str(row.get("line")))
    assert len(keys) == 26 and len(set(keys)) == 26
    classes = {p.stem for p in out.glob("*.jsonl") if not p.stem.startswith("quarantine")}
    assert classes <= {"refund", "bug", "shipping", "other"} and classes
    # one triage call per usable ticket, then one extraction per usable ticket at least
    assert fresh_sim.stats().requests >= 2 * 24
