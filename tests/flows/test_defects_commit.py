"""Issue #10, defect 4: the output and the quarantine are committed as one step.

A real flow runs in a child process that SIGKILLs itself at a chosen `os.replace` (between the
two file moves, or as the commit journal is put in place); the next run must finish or drop
that commit, remove the dead process's temporaries, and account for every record exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flow_defects_support import SCHEMA_PATH, run_flow
from flow_support import MODEL, read_jsonl, sample_tickets, write_jsonl

from prefect_openai_chat import ChatModel
from prefect_openai_chat.examples.tickets import TICKET_PROMPT
from prefect_openai_chat.simulator import Simulator

pytestmark = pytest.mark.filterwarnings('ignore:Field name "schema"')

CHILD = """
import json, os, signal, sys

params = json.loads(sys.argv[1])
crash_at = params.pop("crash_at")
real_replace = os.replace


def replace(src, dst, *args, **kwargs):
    if os.path.abspath(os.fspath(dst)) == crash_at:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally: a real crash
    return real_replace(src, dst, *args, **kwargs)


os.replace = replace
from prefect_openai_chat import ChatModel, OpenAICredentials
from prefect_openai_chat.flows import extract_records

sim = params.pop("sim")
credentials = OpenAICredentials(base_url=sim["base_url"], api_key=sim["api_key"])
model = ChatModel(credentials=credentials, model=sim["model"], timeouts={"read_s": 5.0})
extract_records(chat_model=model, **params)
"""


def _crash_in_a_child(sim: Simulator, params: dict[str, Any], crash_at: Path) -> int:
    from prefect.settings import get_current_settings

    script = Path(params["output"]).parent / "child.py"
    script.write_text(CHILD)
    payload = {
        **params,
        "crash_at": str(crash_at.absolute()),
        "sim": {"base_url": sim.base_url, "api_key": sim.api_key, "model": MODEL},
    }
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "PREFECT_API_URL": str(get_current_settings().api.url),
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    child = subprocess.run(
        [sys.executable, str(script), json.dumps(payload)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    return child.returncode


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".commit" in p.name)


@pytest.mark.parametrize("crash", ["between the two moves", "as the journal is written"])
def test_a_crash_during_the_commit_loses_no_record(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path, crash: str
) -> None:
    tickets = sample_tickets(6, start=140)
    lines: list[Any] = [*tickets[:3], "{broken", {"ticket_id": "T-NOBODY"}, *tickets[3:]]
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    out, bad = tmp_path / "out.jsonl", tmp_path / "bad.jsonl"
    out.write_text('{"_key": "yesterday"}\n')
    bad.write_text('{"key": "yesterday"}\n')
    params = {
        "source": str(source),
        "schema": SCHEMA_PATH,
        "prompt": TICKET_PROMPT,
        "output": str(out),
        "quarantine": str(bad),
        "key_field": "ticket_id",
        "cache": str(tmp_path / "cache.sqlite"),
        "batch_size": 4,
    }
    journal = tmp_path / ".out.jsonl.commit"  # the commit journal, beside the output
    crash_at = bad if crash == "between the two moves" else journal

    _crash_in_a_child(fresh_sim, params, crash_at)

    assert fresh_sim.stats().requests == 6
    if crash == "between the two moves":
        # the journal is in place: the output moved, the quarantine did not yet
        assert journal.is_file()
        assert len(read_jsonl(out)) == 6 and read_jsonl(bad) == [{"key": "yesterday"}]
        # finishing the commit alone (what the next run does first) completes both files
        from prefect_openai_chat.flows.sinks import recover_outputs

        done = recover_outputs(out, bad)
        assert len(done) == 1 and "a commit interrupted by a crash" in done[0]
        assert len(read_jsonl(bad)) == 2
    else:
        # no journal yet: both targets are yesterday's; the temporaries are the dead child's
        assert not journal.exists()
        assert read_jsonl(out) == [{"_key": "yesterday"}]
        assert read_jsonl(bad) == [{"key": "yesterday"}]
        assert len([n for n in _leftovers(tmp_path) if ".tmp-" in n]) >= 2

    fresh_sim.reset()
    summary = run_flow(source, chat_model, tmp_path, batch_size=4)

    assert fresh_sim.stats().requests == 0  # every record was cached by the crashed run
    assert (summary["records"], summary["valid"], summary["quarantined"]) == (8, 6, 2)
    rows, quarantined = read_jsonl(out), read_jsonl(bad)
    assert sorted(r["_key"] for r in rows) == sorted(t["ticket_id"] for t in tickets)
    assert sorted(q["line"] for q in quarantined) == [4, 5]
    assert _leftovers(tmp_path) == []  # no journal, no temporary of the dead child


def test_recovery_leaves_a_live_process_s_files_alone(tmp_path: Path) -> None:
    from prefect_openai_chat.flows.sinks import journal_path, recover_outputs

    out, bad = tmp_path / "out.jsonl", tmp_path / "bad.jsonl"
    parent = os.getppid()  # alive, and not us
    live = tmp_path / f".out.jsonl.tmp-{parent}"
    live.write_text("in progress")
    journal = journal_path(out)
    journal.write_text(json.dumps({"pid": parent, "moves": [[str(live), str(out)]]}))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / f".bad.jsonl.tmp-{int(dead.stdout)}"
    stale.write_text("left by a crash")

    assert recover_outputs(out, bad) == [f"removed {stale}, left by a process that is gone"]
    assert live.exists() and journal.exists() and not out.exists()
