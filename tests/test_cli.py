"""The `prefect-openai-chat` command: help for every subcommand, the demo, setup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import prefect_openai_chat
from prefect_openai_chat.cli import build_parser, main
from prefect_openai_chat.simulator import PROFILES, Simulator


@pytest.mark.parametrize("command", ["demo", "simulator", "setup", "extract", "nights"])
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

    summary = run_demo(records=40, output=str(tmp_path / "demo"))
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


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert (
        capsys.readouterr().out.strip() == f"prefect-openai-chat {prefect_openai_chat.__version__}"
    )


def test_demo_with_an_unknown_profile_lists_the_profiles(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--profile", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown simulator profile 'nope'" in err and "Traceback" not in err
    assert all(name in err for name in PROFILES)


def test_demo_options_that_choose_the_endpoint_exclude_each_other(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--real", "--credentials-block", "x"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_demo_real_without_a_key_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["demo", "--real", "--output", str(tmp_path / "demo")]) == 2
    assert "--real needs OPENAI_API_KEY" in capsys.readouterr().err


@pytest.mark.usefixtures("isolated_results")
def test_demo_ignores_an_openai_key_unless_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A key in the environment never turns the demo into paid calls by itself."""
    from prefect_openai_chat.demo import run_demo

    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-be-used")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there
    summary = run_demo(records=5, profile="ideal", output=str(tmp_path / "demo"))
    assert summary["valid"] == 5
    assert summary["endpoint"].startswith(
        "the local simulator (profile 'ideal') at http://127.0.0.1:"
    )


@pytest.mark.usefixtures("isolated_results")
def test_demo_real_names_the_endpoint_it_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--real follows OPENAI_BASE_URL, and the summary says so (not "the OpenAI API")."""
    with Simulator(profile="ideal", seed=5) as elsewhere:
        base_url = elsewhere.base_url
        monkeypatch.setenv("OPENAI_API_KEY", elsewhere.api_key)
        monkeypatch.setenv("OPENAI_BASE_URL", base_url)
        assert main(["demo", "--real", "--records", "4", "--output", str(tmp_path / "demo")]) == 0
        assert elsewhere.stats().requests >= 4
    saved = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert saved["endpoint"] == f"{base_url.rstrip('/')} (OPENAI_API_KEY from the environment)"


@pytest.mark.usefixtures("isolated_results")
def test_demo_that_extracts_nothing_fails_loudly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "demo",
            "--model",
            "gpt-nope",
            "--profile",
            "ideal",
            "--records",
            "3",
            "--output",
            str(tmp_path / "demo"),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "nothing was extracted, all 3 records were quarantined" in err
    assert "gpt-nope" in err  # the first reason names what was wrong


def test_the_demo_turns_prefect_telemetry_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect_openai_chat.demo import quiet_prefect_environment

    monkeypatch.delenv("PREFECT_SERVER_ANALYTICS_ENABLED", raising=False)
    quiet_prefect_environment()
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_setup_warns_when_no_prefect_server_is_configured(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    """Issue 24: the blocks would be thrown away with the temporary server, so setup
    refuses (exit 2) instead of exiting 0 with a warning."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-setup-test-123")
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert main(["setup"]) == 2
    captured = capsys.readouterr()
    assert "PREFECT_API_URL is not set" in captured.err and "prefect server start" in captured.err
    assert "--allow-temporary-server" in captured.err and "saved" not in captured.out
