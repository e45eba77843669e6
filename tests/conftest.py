"""Shared fixtures: one Prefect test harness per session, Redis, PostgreSQL, a simulator."""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest
from dask_support import DaskCluster

if TYPE_CHECKING:
    from prefect.events import Event

# The Prefect API servers the tests start (the test harness's among them) send no usage
# telemetry: there is no network here but the package registries.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _forget_the_parents_prefect_services() -> None:
    """In a forked child: drop the exit hooks of the Prefect services the parent started.

    Prefect (3.9) resets its queue services in a forked child (they live on the parent's
    loop thread) but leaves each one's `threading._register_atexit` hook. At the child's
    exit `threading._shutdown` calls it, `drain` asserts on the reset service, and the
    exception escapes multiprocessing's `Process._bootstrap`: the child ends with exit
    code 1 and no traceback. Only after a test has run a flow (which starts the log and
    event services), so only in whole-suite runs. Services the child starts keep theirs.
    """
    services = sys.modules.get("prefect._internal.concurrency.services")
    if services is None:
        return
    hooks = threading._threading_atexits  # type: ignore[attr-defined]
    hooks[:] = [
        hook
        for hook in hooks
        if not isinstance(
            getattr(getattr(hook, "func", None), "__self__", None), services._QueueServiceBase
        )
    ]


os.register_at_fork(after_in_child=_forget_the_parents_prefect_services)


# Session fixtures that start something heavy: their tests share one worker, so one starts.
SHARED_FIXTURES = {"dask_cluster": "dask", "prefect_server": "prefect-server"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups (its hook is not trylast)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep tests that share an expensive fixture on one pytest-xdist worker.

    The suite runs on pytest-xdist workers (`-n`, `--dist loadgroup` in pyproject.toml), each
    with its own session fixtures, and every other test goes wherever a worker is free. A
    test of the session's Dask cluster or of tests/deploy's Prefect server joins that
    fixture's group (one cluster, one server, not one per worker); a test of a
    module-scoped fixture (a Prefect server, an S3 server) joins its module's group, so
    the module's tests share one instead of starting one per worker.
    """
    for item in items:
        fixtures = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        shared = [SHARED_FIXTURES[name] for name in fixtures if name in SHARED_FIXTURES]
        if shared:
            item.add_marker(pytest.mark.xdist_group(shared[0]))
        elif any(d.scope in ("module", "class") for defs in fixtures.values() for d in defs):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    # The longest tests (marked `slow`: Prefect servers, workers, the tour) first, so that
    # none of them starts last and runs alone at the end (`--no-loadscope-reorder` keeps
    # this order); a stable sort keeps pytest-randomly's order within each kind.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A temporary Prefect API and database for the whole session (started on first use).

    Task results go to a temporary folder, not ~/.prefect/storage, and the flow
    heartbeat is off: without that a sync flow waits up to a second on exit.
    """
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_LOCAL_STORAGE_PATH,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    updates = {
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
        PREFECT_LOCAL_STORAGE_PATH: tmp_path_factory.mktemp("prefect-results"),
    }
    with prefect_test_harness(server_startup_timeout=180), temporary_settings(updates=updates):
        yield


@pytest.fixture
def emitted_events(prefect_harness: None) -> Iterator[Callable[[], list[Event]]]:
    """The Prefect events this process emits during the test, read as they leave it.

    They are kept here and not sent: task runs reach the API only as events, which it
    stores a moment later (on a loaded machine, later than any fixed wait), so a test of
    what task runs say reads the events themselves. Call it once the flow has ended.
    """
    from prefect.events.clients import AssertingEventsClient
    from prefect.events.worker import EventsWorker

    AssertingEventsClient.reset()
    EventsWorker.set_client_override(AssertingEventsClient)

    def events() -> list[Event]:
        EventsWorker.instance().drain()
        return [event for client in AssertingEventsClient.all for event in client.events]

    try:
        yield events
    finally:
        EventsWorker.set_client_override(None)
        AssertingEventsClient.reset()


@pytest.fixture
def isolated_results(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Task results and the default record cache per test, under `tmp_path`.

    Otherwise both live under PREFECT_HOME, and a test (or a second session) would be
    served from another one's cache.
    """
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from prefect_openai_chat.tasks import _common

    monkeypatch.setattr(_common, "default_cache_path", lambda: tmp_path / "record-cache.sqlite")
    with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: tmp_path / "prefect-results"}):
        yield


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis URL; skips when unreachable, fails instead when REQUIRE_REDIS=1."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:
        message = f"Redis at {REDIS_URL} is unreachable ({exc}); set REDIS_URL or start Redis"
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return REDIS_URL


def with_search_path(url: str, schema: str) -> str:
    """`url` with libpq's `options` setting the connection's `search_path` to `schema`."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}', safe='')}"


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


@pytest.fixture(scope="session")
def dask_cluster(prefect_harness: None) -> Iterator[DaskCluster]:
    """One Dask `LocalCluster` of two worker processes for the session, both up before use.

    Starting one takes seconds, so the tests that run shards on Dask share it. Its workers
    report to the session's Prefect API, as every worker of a real cluster reports to one
    server (else each would start a temporary one of its own), and they get no `AWS_*`
    variables: what reaches a store, they get from `storage_options` alone.
    """
    from distributed import Client, LocalCluster
    from prefect.settings import PREFECT_API_URL

    with pytest.MonkeyPatch.context() as env:  # the workers' environment, copied at their start
        env.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
        for name in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.delenv(name, raising=False)
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None
        )
        try:
            # Both workers up before the first shard: else Dask may give every shard to one.
            with Client(cluster) as client:  # type: ignore[no-untyped-call]
                client.wait_for_workers(2)
                pids = frozenset(client.run(os.getpid).values())
        except BaseException:
            cluster.close()  # type: ignore[no-untyped-call]
            raise
    try:
        yield DaskCluster(address=cluster.scheduler_address, worker_pids=pids)
    finally:
        cluster.close()  # type: ignore[no-untyped-call]
