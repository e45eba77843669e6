"""Ledger fixtures: a SQLite file or a PostgreSQL schema of its own per test.

`cache_setting` runs a test once per backend: the `cache=` value a user would pass
(a SQLite path, or `postgres_ledger_url` from tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", "postgres"])
def cache_setting(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The `cache=` value of a ledger of this test's own, once per backend."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_ledger_url"))
    return str(tmp_path / "ledger.sqlite")
