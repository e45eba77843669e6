"""The `prefect-openai-chat` command: help for every subcommand, the demo, setup."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_openai_chat.cli import build_parser, main


@pytest.mark.parametrize("command", ["demo", "simulator", "setup"])
def test_every_subcommand_documents_its_options(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for action in build_parser()._subparsers._group_actions[0].choices[command]._actions:  # type: ignore[union-attr]
        if action.option_strings and action.dest != "help":
            assert action.help, f"{command} {action.option_strings} has no help"
            assert action.option_strings[-1] in text


@pytest.mark.usefixtures("prefect_harness")
def test_demo_runs_on_the_simulator_and_keeps_every_record(tmp_path: Path) -> None:
    from prefect_openai_chat.demo import run_demo

    summary = run_demo(records=40, output=str(tmp_path / "demo"), simulate=True)
    assert summary["records"] == 40 == summary["valid"] + summary["quarantined"]
    assert summary["retries"] > 0  # the flaky profile shows the in-call tier at work
    rows = (tmp_path / "demo" / "tickets.jsonl").read_text().splitlines()
    quarantined = (tmp_path / "demo" / "quarantine.jsonl").read_text().splitlines()
    assert len(rows) == summary["valid"] and len(quarantined) == summary["quarantined"]
    saved = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert saved["records"] == 40


def test_demo_rejects_a_bad_record_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--records", "0"]) == 2
    assert "--records must be between 1 and 300" in capsys.readouterr().err


def test_setup_without_a_key_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = subprocess.run(
        [sys.executable, "-m", "prefect_openai_chat.cli", "setup"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "OPENAI_API_KEY is not set" in result.stderr


@pytest.mark.usefixtures("prefect_harness")
def test_setup_saves_both_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect_openai_chat import ChatModel

    monkeypatch.setenv("OPENAI_API_KEY", "sk-setup-test-123")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert main(["setup", "--credentials", "cli-creds", "--chat-model", "cli-model"]) == 0
    loaded = ChatModel.load("cli-model")
    assert loaded.credentials.resolve_api_key() == "sk-setup-test-123"
    assert loaded.endpoint == "http://127.0.0.1:9/v1"
