"""Issue 24: every misuse of the `prefect-openai-chat` command is one line and exit code 2.

The command runs as a subprocess, as a user runs it; a traceback on stderr is a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_openai_chat.cli import build_parser
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.simulator import cli as simulator_cli
from prefect_openai_chat.simulator.server import bind_socket


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prefect_openai_chat.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def _one_line_misuse(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert all(word in last for word in words), last


def test_demo_output_that_is_a_file(tmp_path: Path) -> None:
    taken = tmp_path / "passwd"
    taken.write_text("root:x:0:0\n")
    result = _cli("demo", "--output", str(taken), "--records", "1")
    _one_line_misuse(result, "--output", "is a file, not a folder", "give a folder")
    assert taken.read_text() == "root:x:0:0\n"


def test_demo_output_that_cannot_be_created(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("x")
    result = _cli("demo", "--output", str(blocked / "below"), "--records", "1")
    _one_line_misuse(result, "cannot be created", "give a folder")


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_simulator_port_out_of_range(port: str) -> None:
    result = _cli("simulator", "--port", port)
    _one_line_misuse(result, "--port", "1 to 65535")


def test_simulator_host_that_is_not_loopback_nor_every_interface() -> None:
    result = _cli("simulator", "--host", "192.0.2.1")
    _one_line_misuse(result, "'192.0.2.1' is not a loopback address", "0.0.0.0")


def test_setup_without_a_prefect_server_refuses(tmp_path: Path) -> None:
    """Blocks saved to a temporary server are gone when the command ends: exit 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        OPENAI_API_KEY="sk-setup-test-123",
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PYTHONPATH=os.environ.get("PYTHONPATH", ""),
    )
    result = _cli("setup", env=env)
    _one_line_misuse(result, "PREFECT_API_URL is not set", "--allow-temporary-server")
    assert "saved" not in result.stdout


def test_setup_against_a_prefect_server_that_is_down(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        OPENAI_API_KEY="sk-setup-test-123",
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_API_URL="http://127.0.0.1:9/api",  # nothing listens on the discard port
        PYTHONPATH=os.environ.get("PYTHONPATH", ""),
    )
    result = _cli("setup", env=env)
    _one_line_misuse(result, "cannot reach http://127.0.0.1:9/api", "prefect server start")


def test_simulator_accepts_every_interface_with_a_warning() -> None:
    """0.0.0.0 is accepted by the options and warned about; checked without binding it."""
    parser = build_parser()
    args = parser.parse_args(["simulator", "--host", "0.0.0.0"])
    assert (args.host, args.port) == ("0.0.0.0", simulator_cli.DEFAULT_PORT)
    warning = simulator_cli.host_warning(args.host)
    assert warning is not None and "other machines" in warning and "API key" in warning
    assert simulator_cli.host_warning("127.0.0.1") is None
    with pytest.raises(ValueError, match="loopback only"):
        bind_socket("0.0.0.0", 0)  # the library's simulator stays on loopback


def test_the_suggested_port_is_not_dasks_dashboard() -> None:
    port = simulator_cli.build_parser().parse_args([]).port
    assert port == simulator_cli.DEFAULT_PORT
    assert port not in {8787, 8765, 8080, 8000, 8888, 4200, 18080}
    assert port < 32768  # below the ephemeral ranges


def test_misuse_errors_become_one_line() -> None:
    from prefect_openai_chat.cli import is_misuse, misuse_message

    error = InvalidInputError("key_field 'id' is missing\non every record")
    assert is_misuse(error) and misuse_message(error) == "key_field 'id' is missing on every record"
    exists = FileExistsError(17, "File exists", "/etc/passwd")
    assert is_misuse(exists) and "'/etc/passwd'" in misuse_message(exists)
    assert not is_misuse(RuntimeError("a bug"))
