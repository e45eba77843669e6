"""Scale-out tests: a real Prefect server of their own (as tests/deploy starts one)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))

from server_support import PrefectServer, running_server


@pytest.fixture(scope="module")
def scale_out_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """`prefect server start` on 127.0.0.1:<free port>, stopped after the module."""
    yield from running_server(tmp_path_factory.mktemp("scale-out-server"))
