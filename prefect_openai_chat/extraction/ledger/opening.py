"""`open_ledger(cache)`: the ledger a `cache=` setting names.

`cache` is what `extract_records` and `extract_batch` take: `True` for the default
(the `PREFECT_OPENAI_CHAT_CACHE` environment variable when set, else the default SQLite
file), a path for another SQLite file, a `postgresql://` (or `postgres://`) URL for the
ledger shared by every host, `False` for none.

Example:
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> ledger = open_ledger(os.path.join(folder, "records.sqlite"))
    >>> type(ledger).__name__
    'SqliteLedger'
    >>> ledger.close()
    >>> open_ledger(False) is None
    True
    >>> ledger_kind("postgresql://etl@db.internal/night"), ledger_kind("out/records.sqlite")
    ('postgres', 'sqlite')
    >>> try:
    ...     ledger_kind("redis://127.0.0.1:6379/0")
    ... except InvalidInputError as exc:
    ...     print(str(exc).split(" (")[0])
    cache='redis://127.0.0.1:6379/0' is not a ledger: a URL must start with postgresql://
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction.ledger.base import Ledger
from prefect_openai_chat.extraction.ledger.postgres import PostgresLedger, masked_url
from prefect_openai_chat.extraction.ledger.sqlite import SqliteLedger

ENV_VAR = "PREFECT_OPENAI_CHAT_CACHE"  # the ledger `cache=True` means, when set
POSTGRES_SCHEMES = ("postgresql", "postgres")
CacheSetting = bool | str | Path


def resolve_cache(cache: CacheSetting) -> CacheSetting:
    """`cache` with `True` replaced by the `PREFECT_OPENAI_CHAT_CACHE` setting when set.

    Returns `False` (no ledger), `True` (the caller's default file), a path or a URL.

    Example:
        >>> resolve_cache(False), resolve_cache("a.sqlite"), resolve_cache("postgres://db/x")
        (False, PosixPath('a.sqlite'), 'postgres://db/x')
    """
    if cache is True:
        setting = os.environ.get(ENV_VAR, "").strip()
        return resolve_cache(setting) if setting else True
    if cache is False or isinstance(cache, Path):
        return cache
    if isinstance(cache, str) and cache.strip():
        return cache if "://" in cache else Path(cache)
    raise InvalidInputError(
        f"cache={cache!r} is not a ledger: pass True (the default file), a SQLite file path,"
        " a postgresql:// URL, or False for none"
    )


def ledger_kind(cache: CacheSetting) -> Literal["none", "sqlite", "postgres"]:
    """Which backend `cache` names; a URL of another scheme is an `InvalidInputError`."""
    target = resolve_cache(cache)
    if target is False:
        return "none"
    if not isinstance(target, str):
        return "sqlite"
    scheme = target.split("://", 1)[0].lower()
    if scheme in POSTGRES_SCHEMES:
        return "postgres"
    raise InvalidInputError(
        f"cache={masked_url(target)!r} is not a ledger: a URL must start with postgresql://"
        f" (scheme {scheme!r} is not supported); for a SQLite file pass its path"
    )


def ledger_file(
    cache: CacheSetting, default_path: Callable[[], Path] | Path | None = None
) -> Path | None:
    """The SQLite file `cache` names (None for no ledger or a PostgreSQL one).

    `default_path` gives the file of `True` without `PREFECT_OPENAI_CHAT_CACHE`; the one
    resolution `open_ledger` opens and the pre-flight path checks compare.

    Example:
        >>> ledger_file("a.sqlite"), ledger_file(False), ledger_file("postgresql://db/x")
        (PosixPath('a.sqlite'), None, None)
    """
    if ledger_kind(cache) != "sqlite":
        return None
    target = resolve_cache(cache)
    if target is True:
        if default_path is None:
            raise InvalidInputError("cache=True needs a default ledger path; pass a path instead")
        target = default_path() if callable(default_path) else default_path
    return Path(str(target)) if not isinstance(target, Path) else target


def ledger_role(cache: CacheSetting) -> str:
    """How messages name the ledger `cache` means: where the setting came from.

    Example:
        >>> ledger_role("a.sqlite")
        'cache'
    """
    if cache is not True:
        return "cache"
    if os.environ.get(ENV_VAR, "").strip():
        return f"cache (the record ledger {ENV_VAR} names)"
    return "cache (the default record ledger)"


def open_ledger(
    cache: CacheSetting,
    default_path: Callable[[], Path] | Path | None = None,
    *,
    connect: bool = True,
) -> Ledger | None:
    """The ledger `cache` names, opened (None for `False`); `default_path` for `True`.

    A PostgreSQL server that does not answer is a `LedgerError` now; with
    `connect=False` the ledger connects on first use instead, within its patience
    (`postgres.PATIENCE_S`): what a batch does, so that an outage costs its records
    (each an `error` outcome saying so), not the batch.
    """
    kind = ledger_kind(cache)
    if kind == "none":
        return None
    if kind == "postgres":
        return PostgresLedger(str(resolve_cache(cache)), connect=connect)
    path = ledger_file(cache, default_path)
    assert path is not None
    return SqliteLedger(path)
