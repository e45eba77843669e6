"""Object storage tests: a real S3 API on loopback (moto's server), real flows, the simulator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from moto_support import moto_endpoint
from s3_support import KEY_ID, MODEL, SECRET

from prefect_openai_chat import ChatModel, OpenAICredentials
from prefect_openai_chat.simulator import Simulator


@pytest.fixture(autouse=True)
def _harness(isolated_results: None) -> None:
    """The session's Prefect test API; task results and the record cache per test."""


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3 API on 127.0.0.1 (moto's threaded server) for the whole session."""
    with moto_endpoint() as endpoint:
        yield endpoint


@pytest.fixture
def s3_options(s3_endpoint: str) -> dict[str, Any]:
    """`storage_options` pointing s3fs at the server."""
    return {"client_kwargs": {"endpoint_url": s3_endpoint}, "key": KEY_ID, "secret": SECRET}


@pytest.fixture
def s3(s3_options: dict[str, Any]) -> Any:
    """An s3fs filesystem on the server, to set up and look at buckets."""
    import s3fs

    return s3fs.S3FileSystem(**s3_options)


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    """A fresh bucket for one test, removed after it."""
    name = f"night-{uuid.uuid4().hex[:12]}"
    s3.mkdir(name)
    yield name
    s3.rm(name, recursive=True)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=23) as simulator:
        yield simulator


@pytest.fixture
def chat_model(sim: Simulator) -> ChatModel:
    sim.reset()
    credentials = OpenAICredentials(base_url=sim.base_url, api_key=sim.api_key)
    return ChatModel(
        credentials=credentials,
        model=MODEL,
        timeouts={"read_s": 5.0},
    )
