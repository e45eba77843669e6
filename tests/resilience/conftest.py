"""Helpers for the resilience tests: real openai exceptions, recording sleeps, fake clocks."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from resilience_helpers import FakeClock, RecordingSleep


@pytest.fixture
def recording_sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def unique_key(request: pytest.FixtureRequest) -> str:
    """A circuit key (and Redis prefix part) unique to this test."""
    import uuid

    return f"http://127.0.0.1:1/v1|{request.node.name}-{uuid.uuid4().hex[:8]}"


ErrorFactory = Callable[..., BaseException]


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    value = f"test-resilience-{uuid.uuid4().hex}"
    yield value
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{value}:*"))
    if keys:
        client.delete(*keys)
