"""The README's tour as a newcomer follows it on the offline road: top to bottom, in order.

From "A five-minute tour" to "One deployment" (whose commands
tests/deploy/test_readme_deployment.py runs), every ```bash and ```python block in the
order of the page, in one working folder that holds what a clone holds
(`prefect_openai_chat/data/tickets.jsonl`), with a fresh PREFECT_HOME and no
`OPENAI_API_KEY`:

- the shell commands run as subprocesses in that PREFECT_HOME: `prefect config set
  PREFECT_API_URL=...` points it at the session's Prefect API (the test harness stands in
  for `prefect server start`), `prefect-openai-chat simulator` serves the simulator on a
  free port instead of 18787 (and `setup --simulator` is given that address), and the
  `setup` that the offline road replaces is not run;
- the Python blocks run in this process, each as its own `__main__`, with the same
  PREFECT_HOME, so they share one record ledger as a newcomer's would.

Each step is checked for the work it says it does.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import runpy
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefect_openai_chat.examples.tickets import sample_tickets_path

pytestmark = pytest.mark.slow  # one whole tour: about a minute
ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TOUR = README[README.index("## A five-minute tour") : README.index("**One deployment.**")]


def tour_steps() -> list[tuple[str, str]]:
    """("bash", one command) and ("python", one block), in the order of the page."""
    steps: list[tuple[str, str]] = []
    for kind, body in re.findall(r"```(bash|python)[^\n]*\n(.*?)```", TOUR, re.S):
        if kind == "python":
            steps.append((kind, body))
            continue
        for command in body.replace("\\\n", " ").splitlines():
            command = command.split("  #")[0].strip()
            if command:
                steps.append((kind, command))
    return steps


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def shell(command: str, cwd: Path, env: dict[str, str]) -> str:
    """A documented command, run by this interpreter (no reliance on PATH); its output."""
    program, *args = shlex.split(command)
    module = {"prefect": "prefect", "prefect-openai-chat": "prefect_openai_chat.cli"}[program]
    done = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"`{command}` exited {done.returncode}:\n{output[-3000:]}"
    return output


@pytest.fixture
def newcomer(
    prefect_harness: None, docs_s3_env: str, tmp_path: Path
) -> Iterator[tuple[Path, dict[str, str]]]:
    """A clone's working folder and a shell's environment: a fresh PREFECT_HOME, no key."""
    from prefect.settings import PREFECT_HOME, temporary_settings

    from prefect_openai_chat.process import reset_process_state

    work, home = tmp_path / "clone", tmp_path / "prefect-home"
    data = work / "prefect_openai_chat" / "data"
    data.mkdir(parents=True)
    (data / "tickets.jsonl").write_bytes(sample_tickets_path().read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PREFECT_"))}
    env |= {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    cwd = os.getcwd()
    os.chdir(work)
    reset_process_state()  # no client or circuit of an earlier test's simulator
    handlers = logging_handlers()
    try:
        with temporary_settings(updates={PREFECT_HOME: home}):
            yield work, env
    finally:
        os.chdir(cwd)
        reset_process_state()
        restore_logging_handlers(handlers)


def logging_handlers() -> dict[str, list[logging.Handler]]:
    """Every logger's handlers, by name ("" is the root)."""
    loggers = {"": logging.getLogger(), **logging.Logger.manager.loggerDict}
    return {
        name: list(logger.handlers)
        for name, logger in loggers.items()
        if isinstance(logger, logging.Logger)
    }


def restore_logging_handlers(before: dict[str, list[logging.Handler]]) -> None:
    """Put back the handlers `logging_handlers()` saw; drop handlers added since.

    The tour's flows run under this test's captured stdout and stderr, and Prefect may
    configure its logging there (a console handler on the captured stream). Kept after
    the test, that handler writes to a closed file: every later log line of the session,
    down to the harness's own "Stopping temporary server", ends in a RecursionError.
    """
    for name, handlers in logging_handlers().items():
        logger = logging.getLogger(name) if name else logging.getLogger()
        logger.handlers[:] = before.get(name, [h for h in handlers if not is_stream(h)])


def is_stream(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and not isinstance(
        handler, logging.FileHandler
    )


def test_the_tour_runs_top_to_bottom_offline(
    newcomer: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect.settings import PREFECT_API_URL

    from prefect_openai_chat import ChatModel, OpenAICredentials

    work, env = newcomer
    port = free_port()
    simulator: subprocess.Popen[bytes] | None = None
    said: list[str] = []  # what each step printed, in order
    try:
        for kind, step in tour_steps():
            if kind == "python":
                path = work / f"block_{len(said)}.py"
                path.write_text(step, encoding="utf-8")
                runpy.run_path(str(path), run_name="__main__")
                said.append(capsys.readouterr().out)
            elif step == "prefect server start":
                said.append("")  # the session's test harness is the server
            elif step.startswith("prefect config set PREFECT_API_URL="):
                said.append(
                    shell(
                        f"prefect config set PREFECT_API_URL={PREFECT_API_URL.value()}", work, env
                    )
                )
            elif step.startswith("prefect-openai-chat simulator"):
                words = shlex.split(step.replace("18787", str(port)))
                simulator = subprocess.Popen(
                    [sys.executable, "-m", "prefect_openai_chat.cli", *words[1:]], cwd=work,
                    env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
                wait_answering(port, simulator)
                said.append(step)
            elif step == "prefect-openai-chat setup --simulator":
                said.append(shell(f"{step} http://127.0.0.1:{port}/v1", work, env))
            elif step == "prefect-openai-chat setup":
                said.append("")  # the offline road's `setup --simulator` replaces it
            else:
                said.append(shell(step, work, env))
    finally:
        if simulator is not None:
            simulator.terminate()
            simulator.wait(timeout=30)

    steps = [step for _, step in tour_steps()]
    out = dict(zip(steps, said, strict=True))

    def printed(fragment: str) -> str:
        return next(out[step] for step in steps if fragment in step)

    assert "PREFECT_API_URL" in printed("prefect config set")
    setup = printed("setup --simulator")
    assert "answers" in setup and "temporary server" not in setup
    credentials = OpenAICredentials.load("openai-credentials")
    assert credentials.base_url == f"http://127.0.0.1:{port}/v1"  # the blocks call it

    model = ChatModel.load("nightly-chat-model")  # the tour's tuned model, with its fallback
    assert (model.model, model.fallback_models) == ("gpt-4o-mini-2024-07-18", ["bigger-chat-model"])

    hello = printed("def hello()").splitlines()
    assert re.search(r"prompt_tokens=[1-9]", hello[0]) and hello[-1].strip()  # usage, answer

    offline = re.search(r"simulator prints a line like `customer='customer (\w+)'([^`]*)`", README)
    assert offline, "the README no longer says what the offline road prints"
    invoice = printed("def one_invoice").strip()  # the same, with a made-up word of its own
    assert re.fullmatch(rf"customer='customer \w+'{re.escape(offline[2])}", invoice), invoice

    first_run = re.fullmatch(
        r"(\d+) valid, (\d+) from the ledger, (\d+) new tokens\n",
        printed("run=RunOptions(concurrency=16)"),
    )
    assert first_run, printed("run=RunOptions(concurrency=16)")
    valid, from_ledger, new_tokens = map(int, first_run.groups())
    assert valid >= 290 and from_ledger == 0 and new_tokens > 0  # the first run pays
    listed, again = printed('filesystem("s3")').splitlines()
    assert sorted(Path(p).name for p in ast.literal_eval(listed)) == [
        "quarantine.jsonl",
        "tickets.parquet",
    ]
    assert int(again.split()[0]) >= valid  # the same tickets: answered by the ledger

    extracted = printed("prefect-openai-chat extract")
    assert (work / "out" / "tickets.csv").stat().st_size > 0 and "valid" in extracted


def wait_answering(port: int, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Until the simulator accepts connections (it serves the tour from its own process)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the simulator command exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the simulator did not listen on {port} in {timeout_s} s")
