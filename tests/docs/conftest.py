"""Where the documentation's Python blocks run: a user's machine after the README's steps.

Each block runs as written, as its own `__main__` module, in a fresh working folder
that holds what the docs say a user has at that point: `OPENAI_API_KEY` and
`OPENAI_BASE_URL` pointing at a local simulator, the `AWS_*` variables pointing at a
local S3 API (moto's server) with a bucket `nightly-etl`, the blocks `prefect-openai-chat setup`
saves, a copy of the sample `tickets.jsonl`, and a Prefect API (the session's test
harness).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto_support import moto_endpoint

from prefect_openai_chat.examples.tickets import sample_tickets_path
from prefect_openai_chat.simulator import Simulator

MODEL = "gpt-4o-mini-2024-07-18"
SETUP_BLOCKS = (
    ("openai-chat-credentials", "openai-credentials"),
    ("openai-chat-model", "nightly-chat-model"),
)


@pytest.fixture(scope="session")
def docs_simulator() -> Iterator[Simulator]:
    """One well-behaved simulator for every block (blocks that want faults start their own)."""
    with Simulator(profile="ideal", seed=7) as sim:
        yield sim


@pytest.fixture(scope="session")
def docs_s3_endpoint() -> Iterator[str]:
    """An S3 API on loopback (moto's server) for the blocks that read and write `s3://`."""
    with moto_endpoint() as endpoint:
        yield endpoint


def _point_s3_at(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The AWS environment a user has, on `endpoint`, with the bucket the README uses."""
    import s3fs

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "docs-testing-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "docs-testing-secret")
    s3fs.S3FileSystem.clear_instance_cache()  # one made before would keep its endpoint
    s3 = s3fs.S3FileSystem()
    if not s3.exists("nightly-etl"):
        s3.mkdir("nightly-etl")


@pytest.fixture
def docs_s3_env(docs_s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The `AWS_*` environment on the local S3 API, with the bucket `nightly-etl`."""
    _point_s3_at(docs_s3_endpoint, monkeypatch)
    return docs_s3_endpoint


def _saved_versions() -> dict[str, object]:
    """When each block `setup` saves was last written (None: not saved)."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    versions: dict[str, object] = {}
    with get_client(sync_client=True) as client:
        for slug, name in SETUP_BLOCKS:
            try:
                document = client.read_block_document_by_name(name, block_type_slug=slug)
            except ObjectNotFound:
                versions[name] = None
            else:
                versions[name] = document.updated
    return versions


@pytest.fixture(scope="session")
def setup_blocks() -> dict[str, object]:
    """What the blocks `setup` saved look like; refilled when a snippet saved over them."""
    return {}


@pytest.fixture
def user_machine(
    isolated_results: None,
    docs_simulator: Simulator,
    docs_s3_endpoint: str,
    setup_blocks: dict[str, object],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Path]:
    """A working folder, the OpenAI environment variables, and the blocks `setup` saves.

    Saving a ChatModel block takes seconds, so `setup` runs again only when a snippet
    before this one saved over its blocks.
    """
    from prefect_openai_chat.setup import save_blocks

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("OPENAI_API_KEY", docs_simulator.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", docs_simulator.base_url)
    docs_simulator.configure(script=[])
    _point_s3_at(docs_s3_endpoint, monkeypatch)  # an S3 endpoint, as for the README's s3:// night
    shutil.copy(sample_tickets_path(), work / "tickets.jsonl")  # the docs' "tickets.jsonl"
    if not setup_blocks or _saved_versions() != setup_blocks:
        save_blocks(
            "openai-credentials", "nightly-chat-model", MODEL
        )  # `prefect-openai-chat setup`
        setup_blocks.update(_saved_versions())
    yield work
