"""The network settings of the credentials blocks: checks, fingerprints, secrets (issue 25).

Each wrong setting is refused with the setting's name and what to do: PEM text when the
block is made, a file when it is first used (a block is often saved from another machine
than the worker that reads the file).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from pydantic import ValidationError

from prefect_openai_chat import AzureOpenAICredentials, OpenAICredentials
from prefect_openai_chat.blocks.credentials import key_fingerprint
from prefect_openai_chat.blocks.network import normalized_pem
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.redaction import redact_text

KEY = "sk-network-test-0123456789"
PASSWORD = "proxy-secret-pass-4242"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def issued(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("etl-bot@example.com")


def test_proxy_credentials_in_the_url_are_refused_without_showing_them() -> None:
    with pytest.raises(ValidationError) as info:
        OpenAICredentials(api_key=KEY, proxy_url=f"http://bot:{PASSWORD}@proxy.corp:3128")
    text = str(info.value)
    assert "proxy_username" in text and "proxy_password" in text
    assert PASSWORD not in text


@pytest.mark.parametrize("url", ["proxy.corp:3128", "socks4://proxy.corp:1080", "http://"])
def test_a_proxy_url_without_scheme_or_host_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="proxy_url must start with http:// or https://"):
        OpenAICredentials(api_key=KEY, proxy_url=url)


def test_proxy_password_is_secret_and_redacted() -> None:
    credentials = OpenAICredentials(
        api_key=KEY,
        proxy_url="http://proxy.corp:3128",
        proxy_username="bot",
        proxy_password=PASSWORD,
    )
    assert PASSWORD not in repr(credentials) and PASSWORD not in credentials.model_dump_json()
    assert PASSWORD not in str(credentials.cache_key())
    assert redact_text(f"407 for {PASSWORD}") == "407 for ***"


def test_the_cache_key_tells_network_settings_apart_and_keeps_the_key_last() -> None:
    plain = OpenAICredentials(api_key=KEY)
    proxied = OpenAICredentials(api_key=KEY, proxy_url="http://proxy.corp:3128")
    other = OpenAICredentials(api_key=KEY, proxy_url="http://proxy2.corp:3128")
    unverified = OpenAICredentials(api_key=KEY, verify=False)
    keys = {c.cache_key() for c in (plain, proxied, other, unverified)}
    assert len(keys) == 4
    assert (
        proxied.cache_key()
        == OpenAICredentials(api_key=KEY, proxy_url="http://proxy.corp:3128").cache_key()
    )
    assert key_fingerprint(proxied.cache_key()) == key_fingerprint(plain.cache_key())


def test_a_missing_ca_bundle_file_is_a_clear_error_when_first_used(tmp_path: Path) -> None:
    missing = tmp_path / "corp-ca.pem"
    credentials = OpenAICredentials(api_key=KEY, ca_bundle=str(missing))  # saved elsewhere: fine
    for use in (credentials.cache_key, lambda: credentials.get_client(max_connections=2)):
        with pytest.raises(InvalidInputError, match="ca_bundle: there is no file at") as info:
            use()
        assert str(missing) in str(info.value) and "PEM text" in str(info.value)


def test_ca_bundle_pem_text_that_does_not_parse_is_refused_when_the_block_is_made() -> None:
    garbage = "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n"
    with pytest.raises(ValidationError, match="ca_bundle: the PEM text holds no CA certificate"):
        OpenAICredentials(api_key=KEY, ca_bundle=garbage)


def test_a_ca_bundle_file_that_is_not_pem_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ca.der"
    path.write_bytes(b"\x30\x82\x01\x00 not pem")
    credentials = OpenAICredentials(api_key=KEY, ca_bundle=str(path))
    with pytest.raises(InvalidInputError, match=r"ca_bundle: the file .* holds no CA certificate"):
        credentials.ssl_context()


def test_pem_pasted_on_one_line_loads(ca: trustme.CA) -> None:
    one_line = ca.cert_pem.bytes().decode().replace("\n", " ")
    credentials = OpenAICredentials(api_key=KEY, ca_bundle=one_line)
    context = credentials.ssl_context()
    assert context is not None and context.get_ca_certs()
    assert normalized_pem(one_line) == ca.cert_pem.bytes().decode()


def test_a_key_that_does_not_match_its_certificate_is_refused(
    ca: trustme.CA, issued: trustme.LeafCert, tmp_path: Path
) -> None:
    cert = issued.cert_chain_pems[0].bytes().decode()
    wrong_key = ca.issue_cert("someone-else@example.com").private_key_pem.bytes().decode()
    with pytest.raises(ValidationError, match="client_key does not match client_cert"):
        OpenAICredentials(api_key=KEY, client_cert=cert, client_key=wrong_key)
    cert_path = tmp_path / "client.pem"
    cert_path.write_text(cert)
    later = OpenAICredentials(api_key=KEY, client_cert=str(cert_path), client_key=wrong_key)
    with pytest.raises(InvalidInputError, match="client_key does not match client_cert"):
        later.get_client(max_connections=2)


def test_an_encrypted_key_is_refused_instead_of_asking_on_the_terminal(
    issued: trustme.LeafCert,
) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"key-password"),
    ).decode()
    cert = issued.cert_chain_pems[0].bytes().decode()
    with pytest.raises(ValidationError, match="client_key is encrypted; give it unencrypted"):
        OpenAICredentials(api_key=KEY, client_cert=cert, client_key=encrypted)


def test_a_key_without_a_certificate_is_refused(issued: trustme.LeafCert) -> None:
    key = issued.private_key_pem.bytes().decode()
    with pytest.raises(ValidationError, match="client_key is set but client_cert is empty"):
        OpenAICredentials(api_key=KEY, client_key=key)
    assert "PRIVATE KEY" not in redact_text(key)  # the key is masked from then on


def test_azure_has_the_same_settings(ca: trustme.CA) -> None:
    credentials = AzureOpenAICredentials(
        azure_endpoint="https://example.openai.azure.com",
        api_key=KEY,
        proxy_url="http://proxy.corp:3128",
        ca_bundle=ca.cert_pem.bytes().decode(),
    )
    assert credentials.network_fingerprint() in credentials.cache_key()  # type: ignore[operator]
    assert credentials.get_client(max_connections=2)._client._mounts  # the proxy is mounted


def test_network_settings_show_after_the_blocks_own_fields() -> None:
    fields = list(OpenAICredentials.model_json_schema()["properties"])
    assert fields[0] == "api_key" and fields[-1] == "verify"
    assert "proxy_password" in OpenAICredentials.model_json_schema()["secret_fields"]


@pytest.mark.usefixtures("prefect_harness")
def test_network_settings_save_and_load_through_prefect_server(issued: trustme.LeafCert) -> None:
    key = issued.private_key_pem.bytes().decode()
    credentials = OpenAICredentials(
        api_key=KEY,
        proxy_url="http://proxy.corp:3128",
        proxy_username="bot",
        proxy_password=PASSWORD,
        client_cert=issued.cert_chain_pems[0].bytes().decode(),
        client_key=key,
    )
    credentials.save("test-network-credentials", overwrite=True)
    loaded = OpenAICredentials.load("test-network-credentials")
    assert loaded.cache_key() == credentials.cache_key()
    assert loaded.client_key is not None and loaded.client_key.get_secret_value() == key
    assert PASSWORD not in repr(loaded) and key not in repr(loaded)
