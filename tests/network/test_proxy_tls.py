"""Corporate proxies and private CAs, over real sockets (issue 25).

A real forward proxy (proxy.py, with Basic proxy credentials) and the simulator behind a
TLS relay signed by a CA made here (trustme): calls go through the proxy, an untrusted
certificate fails at once with an error naming the host and `ca_bundle`, a gateway that
requires mutual TLS refuses a call without a client certificate and answers one with it,
and `verify=False` reaches a self-signed server with a warning.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import openai
import pytest
import trustme
from forward_proxy_support import PROXY_PASSWORD, PROXY_USER, ForwardProxy
from model_support import MODEL, fast_model
from prefect import flow
from tls_support import TLSRelay

from prefect_openai_chat import ChatModel, OpenAICredentials, chat_completion
from prefect_openai_chat.blocks.assembly import RUNNERS
from prefect_openai_chat.errors import ProxyRefusedError, TLSConfigurationError
from prefect_openai_chat.resilience.classify import classify
from prefect_openai_chat.simulator import Simulator

MESSAGES = [{"role": "user", "content": "Say hello"}]
CHAT = chat_completion.with_options(retry_delay_seconds=0)


def _model(base_url: str, api_key: str, network: dict[str, Any], **fields: Any) -> ChatModel:
    """A fast ChatModel whose credentials carry the given proxy and TLS settings."""
    credentials = OpenAICredentials(base_url=base_url, api_key=api_key, **network)
    return fast_model(base_url, api_key, **fields).model_copy(update={"credentials": credentials})


def _write(path: Path, text: str | bytes) -> str:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def _create(credentials: OpenAICredentials) -> Any:
    """One chat completion through the real sync `openai` client of `credentials`."""
    client = credentials.get_client(max_connections=2)
    try:
        return client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    finally:
        client.close()


@pytest.mark.usefixtures("prefect_harness")
def test_chat_completion_in_a_flow_goes_through_the_proxy_to_a_private_ca_server(
    fresh_sim: Simulator, tls_server: TLSRelay, proxy: ForwardProxy, ca: trustme.CA
) -> None:
    network = {
        "proxy_url": proxy.url,
        "proxy_username": PROXY_USER,
        "proxy_password": PROXY_PASSWORD,
        "ca_bundle": ca.cert_pem.bytes().decode(),  # PEM text, as pasted in the UI
    }
    model = _model(tls_server.base_url, fresh_sim.api_key, network)

    @flow
    def night() -> str:
        return CHAT(model, MESSAGES).content

    assert night()
    assert f"CONNECT 127.0.0.1:{tls_server.port}" in proxy.connects()
    assert fresh_sim.stats().requests == 1
    assert PROXY_PASSWORD not in str(model.credentials.cache_key())


@pytest.mark.usefixtures("prefect_harness")
def test_an_untrusted_server_fails_at_once_naming_the_host_and_ca_bundle(
    fresh_sim: Simulator, tls_server: TLSRelay
) -> None:
    # No network setting at all: the server's CA is not trusted. Before issue 25 this was a
    # plain "Connection error." retried as an outage (3 attempts x 2 task runs).
    model = _model(tls_server.base_url, fresh_sim.api_key, {}, max_attempts=3, task_retries=1)
    before = tls_server.handshakes

    @flow
    def night() -> BaseException | None:
        state = CHAT(model, MESSAGES, return_state=True)
        error = state.result(raise_on_failure=False)
        return error if isinstance(error, BaseException) else None

    error = night()
    assert isinstance(error, TLSConfigurationError), repr(error)
    assert f"127.0.0.1:{tls_server.port}" in str(error)
    assert "ca_bundle" in str(error) and "proxies-and-tls" in str(error)
    assert tls_server.handshakes - before == 1  # no in-call retry, no task re-run
    assert fresh_sim.stats().requests == 0


def test_a_wrong_ca_bundle_fails_with_the_clear_error(
    fresh_sim: Simulator, tls_server: TLSRelay, tmp_path: Path
) -> None:
    other = _write(tmp_path / "other-ca.pem", trustme.CA().cert_pem.bytes())
    credentials = OpenAICredentials(
        base_url=tls_server.base_url, api_key=fresh_sim.api_key, ca_bundle=other
    )
    with pytest.raises(TLSConfigurationError, match="ca_bundle") as info:
        _create(credentials)
    assert f"127.0.0.1:{tls_server.port}" in str(info.value)
    assert classify(info.value).reason == "tls" and not classify(info.value).task_retry


def test_a_ca_bundle_file_is_trusted(
    fresh_sim: Simulator, tls_server: TLSRelay, ca: trustme.CA, tmp_path: Path
) -> None:
    bundle = _write(tmp_path / "corp-ca.pem", ca.cert_pem.bytes())
    credentials = OpenAICredentials(
        base_url=tls_server.base_url, api_key=fresh_sim.api_key, ca_bundle=bundle
    )
    assert _create(credentials).choices[0].message.content


def test_mutual_tls_fails_without_a_client_certificate_and_works_with_one(
    fresh_sim: Simulator,
    mtls_server: TLSRelay,
    ca: trustme.CA,
    client_ca: trustme.CA,
    tmp_path: Path,
) -> None:
    trust = ca.cert_pem.bytes().decode()
    without = OpenAICredentials(
        base_url=mtls_server.base_url, api_key=fresh_sim.api_key, ca_bundle=trust
    )
    with pytest.raises(TLSConfigurationError, match="client_cert and client_key") as info:
        _create(without)
    assert f"127.0.0.1:{mtls_server.port}" in str(info.value)
    assert fresh_sim.stats().requests == 0

    issued = client_ca.issue_cert("etl-bot@example.com")
    chain = b"".join(blob.bytes() for blob in issued.cert_chain_pems)
    with_cert = OpenAICredentials(
        base_url=mtls_server.base_url,
        api_key=fresh_sim.api_key,
        ca_bundle=trust,
        client_cert=_write(tmp_path / "client.pem", chain),  # a path
        client_key=issued.private_key_pem.bytes().decode(),  # PEM text, kept secret
    )
    assert _create(with_cert).choices[0].message.content
    assert fresh_sim.stats().requests == 1


def test_mutual_tls_through_the_proxy_with_the_async_client(
    fresh_sim: Simulator,
    mtls_server: TLSRelay,
    proxy: ForwardProxy,
    ca: trustme.CA,
    client_ca: trustme.CA,
) -> None:
    issued = client_ca.issue_cert("etl-bot@example.com")
    network = {
        "proxy_url": proxy.url,
        "proxy_username": PROXY_USER,
        "proxy_password": PROXY_PASSWORD,
        "ca_bundle": ca.cert_pem.bytes().decode(),
        "client_cert": issued.cert_chain_pems[0].bytes().decode(),
        "client_key": issued.private_key_pem.bytes().decode(),
    }
    model = _model(mtls_server.base_url, fresh_sim.api_key, network)
    result = asyncio.run(RUNNERS.build(model).complete(MESSAGES))
    assert result.content
    assert f"CONNECT 127.0.0.1:{mtls_server.port}" in proxy.connects()


def test_wrong_proxy_credentials_fail_at_once_naming_the_settings(
    fresh_sim: Simulator, tls_server: TLSRelay, proxy: ForwardProxy, ca: trustme.CA
) -> None:
    network = {
        "proxy_url": proxy.url,
        "proxy_username": PROXY_USER,
        "proxy_password": "not-the-proxy-password",
        "ca_bundle": ca.cert_pem.bytes().decode(),
    }
    model = _model(tls_server.base_url, fresh_sim.api_key, network, max_attempts=3)
    before = proxy.refusals()
    with pytest.raises(ProxyRefusedError, match="proxy_username and proxy_password") as info:
        asyncio.run(RUNNERS.build(model).complete(MESSAGES))
    assert f"127.0.0.1:{tls_server.port}" in str(info.value) and "407" in str(info.value)
    assert "not-the-proxy-password" not in str(info.value)
    assert proxy.refusals() - before == 1  # not retried: a setting fixes it
    assert classify(info.value).reason == "proxy_refused"


def test_verify_false_reaches_a_self_signed_server_and_warns(
    fresh_sim: Simulator, tls_server: TLSRelay, caplog: pytest.LogCaptureFixture
) -> None:
    credentials = OpenAICredentials(
        base_url=tls_server.base_url, api_key=fresh_sim.api_key, verify=False
    )
    with caplog.at_level(logging.WARNING, logger="prefect_openai_chat"):
        assert _create(credentials).choices[0].message.content
    assert any("verify=False" in record.getMessage() for record in caplog.records)


def test_azure_credentials_go_through_the_proxy(
    fresh_sim: Simulator, tls_server: TLSRelay, proxy: ForwardProxy, ca: trustme.CA
) -> None:
    from prefect_openai_chat import AzureOpenAICredentials

    credentials = AzureOpenAICredentials(
        azure_endpoint=f"https://127.0.0.1:{tls_server.port}",
        azure_deployment="gpt4o",
        api_key=fresh_sim.api_key,
        proxy_url=proxy.url,
        proxy_username=PROXY_USER,
        proxy_password=PROXY_PASSWORD,
        ca_bundle=ca.cert_pem.bytes().decode(),
    )
    client = credentials.get_client(max_connections=2)
    try:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    except openai.APIStatusError:
        pass  # the simulator may not serve Azure's paths: the answer came back through TLS
    finally:
        client.close()
    assert f"CONNECT 127.0.0.1:{tls_server.port}" in proxy.connects()
