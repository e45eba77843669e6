"""The suite's xdist groups take effect: tests of one expensive fixture share a worker.

tests/conftest.py marks them (`xdist_group`), and pytest-xdist's `--dist loadgroup` puts
a group on one worker by a suffix it adds to each node id. Two things silently undid
that: the marks added after pytest-xdist had read them (its hook ran first), and pytest
9.2, whose node ids ignore the suffix (pytest-dev/pytest-xdist#1386; pyproject.toml keeps
pytest below 9.2 until it is fixed). Either way every worker started its own Prefect
server and Dask cluster, and nothing failed.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def module_resource() -> str:
    """A module-scoped fixture, as a module's S3 or Prefect server is."""
    return "shared by this module's tests"


def test_a_module_fixture_puts_its_tests_in_one_group(
    module_resource: str, request: pytest.FixtureRequest
) -> None:
    if not getattr(request.config.option, "loadgroup", False):  # set on xdist's workers
        pytest.skip("runs under pytest-xdist with --dist loadgroup (the suite's default)")
    assert request.node.nodeid.endswith("@tests/test_suite_grouping.py"), request.node.nodeid
