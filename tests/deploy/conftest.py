"""A real `prefect server start` on loopback, shared by the deployment and browser tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from server_support import PrefectServer, running_server


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """`prefect server start` on 127.0.0.1:<free port>; its process group is stopped after."""
    yield from running_server(tmp_path_factory.mktemp("prefect-server"))
