"""The README's deployment commands, run literally and in order, end in a completed run.

The commands are read from README.md's "One deployment" block (deployments/README.md
must list the same ones) and run, as written, from a copy of the checkout, against a
real `prefect server start` (PREFECT_API_URL set, as the README says), with
`OPENAI_API_KEY` and `OPENAI_BASE_URL` pointing at a local simulator. The last
command, `prefect worker start`, runs until the triggered flow run is final.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from server_support import REPO_ROOT, PrefectServer, stop_process, tail

from prefect_openai_chat.simulator import Simulator

pytestmark = pytest.mark.slow

RUN_TIMEOUT_S = 120.0
DEPLOYMENT = "extract-records/nightly-ticket-extraction"


def bash_blocks(markdown: str) -> list[list[str]]:
    """The commands of each ```bash block, comments and blank lines dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", markdown, re.S)
    return [
        [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
        for block in blocks
    ]


def readme_deployment_commands() -> list[str]:
    """The README's "One deployment" block."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("**One deployment.**") :]
    return bash_blocks(section)[0]


def argv(command: str) -> list[str]:
    """A documented command for the running interpreter (no reliance on PATH)."""
    words = shlex.split(command)
    if words[0] == "prefect":
        return [sys.executable, "-m", "prefect", *words[1:]]
    if words[0] == "prefect-openai-chat":
        return [sys.executable, "-m", "prefect_openai_chat.cli", *words[1:]]
    raise AssertionError(f"unexpected command in the README: {command}")


def checkout_copy(root: Path) -> Path:
    """What a clone holds that the deployment needs: the package and deployments/."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("prefect_openai_chat", "deployments"):
        shutil.copytree(REPO_ROOT / part, root / part, ignore=ignore)
    return root


def wait_final(flow_run_id: UUID, worker: subprocess.Popen[bytes], timeout_s: float) -> Any:
    """The flow run once final, or as it is when the worker died or time ran out."""
    from prefect import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            flow_run = client.read_flow_run(flow_run_id)
            final = flow_run.state is not None and flow_run.state.is_final()
            if final or worker.poll() is not None or time.monotonic() > deadline:
                return flow_run
            time.sleep(0.5)


def test_both_readmes_list_the_same_deployment_commands() -> None:
    readme = readme_deployment_commands()
    guide = bash_blocks((REPO_ROOT / "deployments" / "README.md").read_text(encoding="utf-8"))
    assert readme[0] == "prefect-openai-chat setup"
    assert readme[1:] in guide, f"deployments/README.md lacks the README's {readme[1:]}"
    assert readme[-1] == "prefect worker start --pool llm-pool"


def test_the_readme_deployment_commands_work_in_order(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    commands = readme_deployment_commands()
    checkout = checkout_copy(tmp_path / "checkout")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with Simulator(profile="ideal", seed=11) as sim, prefect_server.settings():
        env = {
            **prefect_server.env,
            "OPENAI_API_KEY": sim.api_key,
            "OPENAI_BASE_URL": sim.base_url,
            "PREFECT_WORKER_QUERY_SECONDS": "1",  # poll every second, not every 15 s
        }
        # The README starts from a fresh server: forget what another test created on this one.
        subprocess.run(
            [sys.executable, "-m", "prefect", "work-pool", "delete", "llm-pool"],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
        )  # fmt: skip
        flow_run_id: UUID | None = None
        for command in commands[:-1]:
            done = subprocess.run(
                argv(command), cwd=checkout, env=env, stdin=subprocess.DEVNULL,
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            output = done.stdout + done.stderr
            assert done.returncode == 0, f"`{command}` failed:\n{output}"
            assert "temporary server" not in output, f"`{command}` did not use the server"
            timings[command] = round(time.perf_counter() - started, 1)
            if command.startswith("prefect deployment run"):
                flow_run_id = UUID(re.search(r"UUID: ([0-9a-f-]{36})", output).group(1))  # type: ignore[union-attr]
        assert flow_run_id is not None, "the README triggers no run"

        log = tmp_path / "worker.log"
        with log.open("wb") as log_file:
            worker = subprocess.Popen(
                argv(commands[-1]), cwd=checkout, env=env, stdin=subprocess.DEVNULL,
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            flow_run = wait_final(flow_run_id, worker, RUN_TIMEOUT_S)
        finally:
            stop_process(worker)
        timings["run completed"] = round(time.perf_counter() - started, 1)
        assert flow_run.state is not None and flow_run.state.is_completed(), (
            f"the run ended {flow_run.state}; worker log:\n{tail(log)}"
        )
        assert sim.stats().requests >= 300  # the deployment's own parameters: all 300 tickets
    rows = (checkout / "out" / "nightly" / "tickets.jsonl").read_text().splitlines()
    quarantined = (checkout / "out" / "nightly" / "quarantine.jsonl").read_text().splitlines()
    assert len(rows) + len(quarantined) == 300
    print("timings (s, cumulative):", timings)
