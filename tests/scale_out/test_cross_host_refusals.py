"""Shards of a work pool may run on other hosts: what those cannot see is refused up front.

`shard_deployment=` runs each shard as a flow run on a worker of a pool, maybe in a
container of another machine. A SQLite ledger there is another empty file (every record
paid again) and a local path is another host's disk; the run says so before any call,
unless `allow_local_paths=True` says every worker is on this host (or sees a shared mount).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from model_support import fast_model
from scale_out_support import PROMPT, SCHEMA, LoggedSimulator, write_records

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.flows import extract_records

pytestmark = pytest.mark.slow  # a Prefect server of its own, shard deployments

DEPLOYMENT = "extract-records-shard/no-such-deployment"


@pytest.fixture(autouse=True)
def _harness(isolated_results: None) -> None:
    """The session's Prefect test API; task results and the record cache per test."""


@pytest.fixture
def sim() -> Iterator[LoggedSimulator]:
    with LoggedSimulator(profile="ideal", seed=5) as simulator:
        yield simulator


def sharded(
    tmp_path: Path, sim: LoggedSimulator, chat_model: Any = None, **options: Any
) -> dict[str, Any]:
    source = write_records(tmp_path / "in.jsonl", 6)
    result: dict[str, Any] = extract_records(
        source=str(source),
        schema=SCHEMA,
        chat_model=chat_model or fast_model(sim.base_url, sim.api_key),
        prompt=PROMPT,
        output=str(tmp_path / "out" / "rows.jsonl"),
        quarantine=str(tmp_path / "out" / "quarantine.jsonl"),
        shards=2,
        shard_deployment=DEPLOYMENT,
        **options,
    )
    return result


def refusal(tmp_path: Path, sim: LoggedSimulator, **options: Any) -> str:
    with pytest.raises(InvalidInputError) as raised:
        sharded(tmp_path, sim, **options)
    assert sim.stats().requests == 0
    assert not list(tmp_path.rglob(".*.shards-*"))  # no part folder either
    return str(raised.value)


@pytest.mark.parametrize("cache", [True, "ledger.sqlite"])
def test_a_sqlite_ledger_with_a_shard_deployment_is_refused_before_any_call(
    sim: LoggedSimulator, tmp_path: Path, cache: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_OPENAI_CHAT_CACHE", raising=False)
    message = refusal(tmp_path, sim, cache=cache)
    assert f"shard_deployment={DEPLOYMENT!r}" in message
    assert "other hosts" in message
    assert "is the SQLite file" in message and "cache='postgresql://" in message
    assert "allow_local_paths=True" in message
    if cache is True:
        assert "the default record ledger" in message


def test_local_paths_with_a_shard_deployment_are_refused_even_with_a_shared_ledger(
    sim: LoggedSimulator, tmp_path: Path, postgres_ledger_url: str
) -> None:
    message = refusal(tmp_path, sim, cache=postgres_ledger_url)
    assert "is the SQLite file" not in message
    for role in ("source", "output", "quarantine"):
        assert f"{role} '{tmp_path}" in message, message
    assert "are local paths" in message and "allow_local_paths=True" in message


def test_allow_local_paths_lets_a_one_host_pool_run(sim: LoggedSimulator, tmp_path: Path) -> None:
    fast_model(sim.base_url, sim.api_key).save("cross-host-model", overwrite=True)
    # past the refusal, the run asks the server for the (missing) deployment
    with pytest.raises(Exception) as raised:
        sharded(
            tmp_path,
            sim,
            chat_model="cross-host-model",
            cache=str(tmp_path / "ledger.sqlite"),
            allow_local_paths=True,
        )
    assert type(raised.value).__name__ == "ObjectNotFound", repr(raised.value)
    assert sim.stats().requests == 0


# Shards on the flow's own task runner (no deployment) with a SQLite ledger and local paths
# are not refused: tests/scale_out/test_shards_in_process.py runs them so.
