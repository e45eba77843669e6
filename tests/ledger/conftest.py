"""Ledger fixtures: a SQLite file or a PostgreSQL schema of its own per test.

`cache_setting` runs a test once per backend: the `cache=` value a user would pass
(a SQLite path, or a `postgresql://` URL whose `search_path` is a schema created for
the test and dropped after it). PostgreSQL is at POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test); without it the PostgreSQL cases skip,
or fail when REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from ledger_support import with_search_path

POSTGRES_URL = os.environ.get("POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server's URL; skips when unreachable, fails instead when REQUIRE_POSTGRES=1."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except Exception as exc:
        message = (
            f"PostgreSQL at {POSTGRES_URL} is unreachable ({str(exc).strip()});"
            " set POSTGRES_URL or start PostgreSQL"
        )
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return POSTGRES_URL


@pytest.fixture
def postgres_ledger_url(postgres_url: str) -> Iterator[str]:
    """A ledger URL whose tables live in a schema of this test's own, dropped after it."""
    import psycopg

    schema = f"ledger_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_search_path(postgres_url, schema)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def cache_setting(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The `cache=` value of a ledger of this test's own, once per backend."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_ledger_url"))
    return str(tmp_path / "ledger.sqlite")
