"""Issue 24: the offline road and `prefect-openai-chat extract`, run as a user runs them.

Each command is the real CLI in a subprocess, against the session's Prefect API and a
simulator on loopback: `setup --simulator` saves blocks that call it, `extract` runs the
extract-records flow on a file with a progress bar and the summary table, a second run
says its records came from the ledger, and every misuse is one line with exit code 2.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefect_openai_chat.examples.tickets import SupportTicket, sample_tickets_path
from prefect_openai_chat.flows.sinks import columns_of, nullable_columns, read_csv_rows
from prefect_openai_chat.simulator import Simulator

SCHEMA = "prefect_openai_chat.examples.tickets:SupportTicket"
PROMPT = "Subject: {subject}\\n\\n{body}"


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=3) as sim:
        yield sim


@pytest.fixture
def user_env(prefect_harness: None, tmp_path: Path) -> dict[str, str]:
    """A user's shell: PREFECT_API_URL set (the session's API), no OpenAI key, own home."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONPATH=os.pathsep.join(filter(None, [str(Path.cwd()), env.get("PYTHONPATH")])),
    )
    return env


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prefect_openai_chat.cli", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=cwd,
    )


def _tickets(folder: Path, count: int) -> Path:
    path = folder / "tickets.jsonl"
    with sample_tickets_path().open(encoding="utf-8") as src:
        path.write_text("".join(itertools.islice(src, count)))
    return path


@pytest.mark.slow
def test_setup_simulator_then_extract_to_csv_then_again_from_the_ledger(
    simulator: Simulator, user_env: dict[str, str], tmp_path: Path
) -> None:
    model = f"cli-extract-{uuid.uuid4().hex[:8]}"
    setup = _cli(
        "setup", "--simulator", simulator.base_url, "--chat-model", model,
        "--credentials", f"{model}-credentials", env=user_env, cwd=tmp_path,
    )  # fmt: skip
    assert setup.returncode == 0, setup.stderr
    assert f"they call the simulator at {simulator.base_url.rstrip('/')}" in setup.stdout
    assert "which answers now" in setup.stdout

    source = _tickets(tmp_path, 12)
    args = (
        "extract", str(source), "--schema", SCHEMA, "--prompt", PROMPT, "--key-field",
        "ticket_id", "--output", "out/tickets.csv", "--model", model,
        "--ledger", str(tmp_path / "ledger.sqlite"),
    )  # fmt: skip
    before = simulator.stats().requests
    first = _cli(*args, env=user_env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert simulator.stats().requests - before >= 12  # every record was a call
    assert "prefect-openai-chat extract: extract-records" in first.stdout
    assert "12/12" in first.stdout + first.stderr  # the progress bar, finished
    rows = read_csv_rows(
        tmp_path / "out" / "tickets.csv",
        columns_of(SupportTicket, "_key"),
        nullable_columns(SupportTicket),
    )
    assert len(rows) == 12 and {row["_key"] for row in rows} == {
        json.loads(line)["ticket_id"] for line in source.read_text().splitlines()
    }
    for row in rows:
        SupportTicket.model_validate({k: v for k, v in row.items() if k != "_key"})
    assert (tmp_path / "out" / "tickets.quarantine.jsonl").read_text() == ""

    before = simulator.stats().requests
    again = _cli(*args, env=user_env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert simulator.stats().requests == before  # the ledger answered every record
    assert "12 of 12 records came from the record ledger" in " ".join(again.stdout.split())
    logs = " ".join(again.stderr.split())
    assert "12 from the ledger (all of them: answered by an earlier run" in logs


def _one_line_misuse(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert all(word in last for word in words), last


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"--schema": "no_such_module:Model"}, ("no_such_module", "cannot be imported")),
        ({"source": "missing.jsonl"}, ("missing.jsonl", "does not exist")),
        ({"--output": "out/rows.xlsx"}, ("out/rows.xlsx", ".csv")),
        ({"--prompt": "{nope}"}, ("nope",)),
        ({"--shards": "0"}, ("shards", "at least 1")),
    ],
    ids=["schema", "source", "output", "prompt", "shards"],
)
def test_extract_misuse_is_one_line_and_exit_2(
    change: dict[str, str],
    words: tuple[str, ...],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Checked before Prefect is asked anything (so in-process, in milliseconds)."""
    from prefect_openai_chat.cli import main

    monkeypatch.chdir(tmp_path)
    _tickets(tmp_path, 2)
    options = {"--schema": SCHEMA, "--prompt": PROMPT, "--output": "out/rows.jsonl", **change}
    source = options.pop("source", "tickets.jsonl")
    assert main(["extract", source, *[item for pair in options.items() for item in pair]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("prefect-openai-chat extract: error: ")
    assert all(word in err[0] for word in words), err


def test_extract_with_a_model_block_not_saved(user_env: dict[str, str], tmp_path: Path) -> None:
    _tickets(tmp_path, 2)
    result = _cli(
        "extract", "tickets.jsonl", "--schema", SCHEMA, "--prompt", PROMPT, "--output",
        "out/rows.jsonl", "--model", "no-such-block", env=user_env, cwd=tmp_path,
    )  # fmt: skip
    _one_line_misuse(result, "no ChatModel block named 'no-such-block'", "setup --simulator")


def test_setup_without_a_key_names_the_offline_road(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    result = _cli("setup", env=env, cwd=tmp_path)
    _one_line_misuse(result, "OPENAI_API_KEY is not set", "setup --simulator", "simulator --")
