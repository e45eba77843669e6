"""`open_ledger(cache)`: which ledger a `cache=` setting names, and clear errors otherwise."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from prefect_openai_chat.errors import InvalidInputError, LedgerError
from prefect_openai_chat.extraction.ledger import (
    ENV_VAR,
    PostgresLedger,
    SqliteLedger,
    ledger_kind,
    open_ledger,
)


def test_settings_name_their_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert open_ledger(False) is None
    default = open_ledger(True, lambda: tmp_path / "default.sqlite")
    assert isinstance(default, SqliteLedger) and default.path == tmp_path / "default.sqlite"
    default.close()
    for setting in (tmp_path / "a.sqlite", str(tmp_path / "b.sqlite")):
        opened = open_ledger(setting)
        assert isinstance(opened, SqliteLedger) and opened.path == Path(setting)
        opened.close()
    assert ledger_kind("postgres://db.internal/night") == "postgres"
    assert ledger_kind("POSTGRESQL://db.internal/night") == "postgres"


def test_the_environment_names_the_default_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from-env.sqlite"))
    opened = open_ledger(True, lambda: tmp_path / "default.sqlite")
    assert isinstance(opened, SqliteLedger) and opened.path == tmp_path / "from-env.sqlite"
    opened.close()
    assert open_ledger(False) is None  # False stays False
    monkeypatch.setenv(ENV_VAR, "postgresql://etl@db.internal/night")
    assert ledger_kind(True) == "postgres"


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("redis://127.0.0.1:6379/0", "scheme 'redis' is not supported"),
        ("mysql://etl:s3cret@db/night", "cache='mysql://etl:***@db/night' is not a ledger"),
        ("", "pass True (the default file), a SQLite file path, a postgresql:// URL"),
        (3, "cache=3 is not a ledger"),
    ],
)
def test_a_bad_setting_is_a_clear_error(setting: object, says: str) -> None:
    with pytest.raises(InvalidInputError, match="is not a ledger") as caught:
        open_ledger(setting)  # type: ignore[arg-type]
    assert says in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_an_unreachable_database_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(LedgerError) as caught:
        open_ledger("postgresql://etl:s3cret@127.0.0.1:1/night")
    message = str(caught.value)
    assert message.startswith("cannot reach the PostgreSQL ledger at")
    assert "postgresql://etl:***@127.0.0.1:1/night" in message and "s3cret" not in message
    assert "cache=False" in message


def test_a_record_cache_file_of_an_earlier_version_is_read_and_stays_readable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "record-cache.sqlite"
    old = sqlite3.connect(path)  # the format every earlier version wrote
    old.execute("CREATE TABLE records (key TEXT PRIMARY KEY, outcome TEXT NOT NULL)")
    old.execute("INSERT INTO records VALUES ('done', '{\"ok\": true}')")
    old.commit()
    old.close()

    ledger = SqliteLedger(path)
    assert ledger.get_many(["done", "new"]) == {"done": '{"ok": true}'}
    assert ledger.claim_many(["done", "new"], "w1", lease_s=60) == {"new"}
    ledger.complete("new", '{"ok": false}')
    ledger.close()

    reader = sqlite3.connect(path)  # an earlier version reads the same table
    rows = dict(reader.execute("SELECT key, outcome FROM records").fetchall())
    reader.close()
    assert rows == {"done": '{"ok": true}', "new": '{"ok": false}'}


def test_two_ledgers_may_share_one_postgres_database(postgres_ledger_url: str) -> None:
    first = PostgresLedger(postgres_ledger_url)
    second = PostgresLedger(postgres_ledger_url, table="another_ledger")
    first.complete("k", '{"ok": true}')
    assert second.get_many(["k"]) == {} and len(first) == 1
    first.close()
    second.close()
