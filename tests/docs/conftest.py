"""Where the documentation's Python blocks run: a user's machine after the README's steps.

Each block runs as written, as its own `__main__` module, in a fresh working folder
that holds what the docs say a user has at that point: `OPENAI_API_KEY` and
`OPENAI_BASE_URL` pointing at a local simulator, the blocks `prefect-openai-chat setup`
saves, and a Prefect API (the session's test harness).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from prefect_openai_chat.simulator import Simulator

MODEL = "gpt-4o-mini-2024-07-18"


@pytest.fixture(scope="session")
def docs_simulator() -> Iterator[Simulator]:
    """One well-behaved simulator for every block (blocks that want faults start their own)."""
    with Simulator(profile="ideal", seed=7) as sim:
        yield sim


@pytest.fixture
def user_machine(
    isolated_results: None,
    docs_simulator: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Path]:
    """A working folder, the OpenAI environment variables, and the blocks `setup` saves."""
    from prefect_openai_chat.setup import save_blocks

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("OPENAI_API_KEY", docs_simulator.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", docs_simulator.base_url)
    docs_simulator.configure(script=[])
    save_blocks("openai-credentials", "nightly-chat-model", MODEL)  # `prefect-openai-chat setup`
    yield work
