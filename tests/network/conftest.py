"""Fixtures of the proxy and TLS tests: a test CA, the simulator behind TLS, a real proxy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from forward_proxy_support import PROXY_PASSWORD, PROXY_USER, ForwardProxy
from registry_support import clear_resilience
from tls_support import TLSRelay

from prefect_openai_chat.simulator import Simulator


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """The private CA the TLS server's certificate is signed by."""
    return trustme.CA()


@pytest.fixture(scope="module")
def client_ca() -> trustme.CA:
    """The CA a mutual-TLS gateway trusts for client certificates."""
    return trustme.CA()


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=11) as simulator:
        yield simulator


@pytest.fixture
def fresh_sim(sim: Simulator) -> Simulator:
    sim.reset()
    clear_resilience()
    return sim


@pytest.fixture(scope="module")
def tls_server(sim: Simulator, ca: trustme.CA) -> Iterator[TLSRelay]:
    """The simulator behind TLS signed by `ca` (no client certificate asked)."""
    with TLSRelay(sim.port, ca) as relay:
        yield relay


@pytest.fixture(scope="module")
def mtls_server(sim: Simulator, ca: trustme.CA, client_ca: trustme.CA) -> Iterator[TLSRelay]:
    """The simulator behind TLS that requires a client certificate signed by `client_ca`."""
    with TLSRelay(sim.port, ca, client_ca=client_ca) as relay:
        yield relay


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForwardProxy]:
    """proxy.py on loopback, asking for Basic proxy credentials."""
    workdir: Path = tmp_path_factory.mktemp("proxy")
    with ForwardProxy(workdir, basic_auth=f"{PROXY_USER}:{PROXY_PASSWORD}") as running:
        yield running
