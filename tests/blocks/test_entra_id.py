"""Issue 25, part 2: Azure OpenAI with Microsoft Entra ID tokens that refresh.

Real parts: azure-identity's credentials and `get_bearer_token_provider`, a test
`TokenCredential` (the azure-core protocol) whose tokens the simulator accepts only
until their expiry (`expiring_tokens`), the real `AsyncAzureOpenAI` client on the
simulator's Azure deployment path, and the real `extract_records` flow.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from azure.core.credentials import AccessToken
from azure.identity import (
    ClientSecretCredential,
    DefaultAzureCredential,
    ManagedIdentityCredential,
)
from pydantic import ValidationError

from prefect_openai_chat import AzureOpenAICredentials, ChatModel
from prefect_openai_chat.blocks import entra
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.examples.tickets import TICKET_PROMPT, sample_tickets_path
from prefect_openai_chat.flows import extract_records
from prefect_openai_chat.redaction import redact_text
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.simulator.azure import MANAGED_IDENTITY_PATH, issue_token

ENDPOINT = "https://example.openai.azure.com"
MODEL = "gpt-4o-mini-2024-07-18"
SECRET = "sp-secret-do-not-show-0123456789"


class ShortLivedCredential:
    """An azure-core `TokenCredential` whose tokens the simulator accepts for `life_s`.

    `claimed_s` is the expiry the token states to the client: the same as `life_s` for an
    honest token, longer for one the server stops accepting early (a clock skew, a token
    rejected before its stated end), which only a refresh after the 401 gets past.
    """

    def __init__(self, life_s: float, claimed_s: float | None = None) -> None:
        self.life_s = life_s
        self.claimed_s = life_s if claimed_s is None else claimed_s
        self.scopes: list[tuple[str, ...]] = []
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return len(self.scopes)

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        with self._lock:
            self.scopes.append(scopes)
        token = issue_token(self.life_s, subject="night")
        return AccessToken(token, int(time.time() + self.claimed_s))


@pytest.fixture(autouse=True)
def _fresh_sources() -> Iterator[None]:
    entra.clear_token_sources()
    yield
    entra.clear_token_sources()


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=25, expiring_tokens=True) as simulator:
        yield simulator


def _registered(name: str, credential: ShortLivedCredential) -> str:
    entra.register_entra_credential(name, lambda choice: credential)
    return name


def _azure_model(sim: Simulator, **credentials: Any) -> ChatModel:
    block = AzureOpenAICredentials(
        azure_endpoint=sim.url, azure_deployment="gpt-4o-mini", **credentials
    )
    return ChatModel(
        credentials=block,
        model=MODEL,
        timeouts={"read_s": 5.0},
        retries={"backoff_base_s": 0.0, "backoff_cap_s": 0.01},
        circuit={"failures": 1000},
    )


def _tickets(tmp_path: Path, n: int) -> Path:
    lines = sample_tickets_path().read_text(encoding="utf-8").splitlines()[:n]
    path = tmp_path / "tickets.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _night(model: ChatModel, tmp_path: Path, n: int, **options: Any) -> dict[str, Any]:
    """`extract_records` over `n` sample tickets, files under `tmp_path`."""
    return extract_records(  # type: ignore[no-any-return]
        source=str(_tickets(tmp_path, n)),
        schema="prefect_openai_chat.examples.tickets:SupportTicket",
        chat_model=model,
        prompt=TICKET_PROMPT,
        output=str(tmp_path / "out.jsonl"),
        quarantine=str(tmp_path / "bad.jsonl"),
        key_field="ticket_id",
        cache=str(tmp_path / "cache.sqlite"),
        **options,
    )


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


# --- a night longer than the tokens' life ----------------------------------------------


def test_a_night_longer_than_a_token_completes_with_refreshed_tokens(
    sim: Simulator, tmp_path: Path, isolated_results: None
) -> None:
    """Tokens that live 1 s, a night of several seconds: azure-identity's provider fetches new
    ones before they expire, and every record ends in the output."""
    sim.reset()
    sim.configure(ttft_s=0.2)  # 12 calls one after another: >= 2.4 s
    credential = ShortLivedCredential(life_s=1.0)
    model = _azure_model(sim, entra_credential=_registered("test-honest", credential))
    started = time.monotonic()
    try:
        result = _night(model, tmp_path, 12, concurrency=1, batch_size=4)
    finally:
        sim.configure(ttft_s=0.0)
    assert time.monotonic() - started > 2 * credential.life_s  # the night outlived tokens
    assert result["valid"] == 12 and result["quarantined"] == 0, result
    assert len(_lines(tmp_path / "out.jsonl")) == 12
    assert credential.calls > 1  # tokens were fetched anew during the night
    assert set(credential.scopes) == {(entra.SCOPE,)}
    assert 401 not in sim.stats().by_status  # refreshed before expiry, never rejected


def test_a_real_managed_identity_credential_renews_its_tokens_through_a_night(
    sim: Simulator, tmp_path: Path, isolated_results: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """azure-identity's own ManagedIdentityCredential, from the simulator's App Service
    style endpoint, tokens living 1 s: every record of a longer night ends in the output."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", sim.url + MANAGED_IDENTITY_PATH)
    monkeypatch.setenv("IDENTITY_HEADER", "identity-header-value")
    sim.reset()
    sim.configure(ttft_s=0.3, token_lifetime_s=1.0)  # 8 calls one after another: >= 2.4 s
    model = _azure_model(sim, entra_credential="managed_identity")
    started = time.monotonic()
    try:
        result = _night(model, tmp_path, 8, concurrency=1, batch_size=4)
    finally:
        sim.configure(ttft_s=0.0, token_lifetime_s=3600.0)
    assert time.monotonic() - started > 2.0  # the night outlived two tokens
    assert result["valid"] == 8 and result["quarantined"] == 0, result
    source = entra.token_source(model.credentials.entra_choice())  # type: ignore[union-attr]
    assert isinstance(source.credential, ManagedIdentityCredential)
    assert 401 not in sim.stats().by_status  # each token renewed before its expiry


def test_a_token_rejected_before_its_stated_expiry_is_refreshed_once_after_the_401(
    sim: Simulator, tmp_path: Path, isolated_results: None
) -> None:
    """Tokens that say they last an hour but that the server refuses after 0.8 s: the
    provider would keep them; each 401 drops the kept token and the call is retried with
    a new one, so the night completes (without the refresh it fails at the first 401)."""
    sim.reset()
    sim.configure(ttft_s=0.15)
    credential = ShortLivedCredential(life_s=0.8, claimed_s=3600.0)
    model = _azure_model(sim, entra_credential=_registered("test-skewed", credential))
    try:
        result = _night(model, tmp_path, 20, concurrency=2, batch_size=5)
    finally:
        sim.configure(ttft_s=0.0)
    assert result["valid"] == 20 and result["quarantined"] == 0, result
    assert len(_lines(tmp_path / "out.jsonl")) == 20
    assert sim.stats().by_status.get(401, 0) >= 1  # tokens did expire mid-night
    assert credential.calls > 1
    source = entra.token_source(model.credentials.entra_choice())  # type: ignore[union-attr]
    assert source.refreshes >= 1


def test_a_token_that_is_refused_again_fails_the_call_clearly(sim: Simulator) -> None:
    """A token refused even fresh (already expired when issued) is retried once, then the
    call fails with CredentialsRejectedError, not after retrying for ever."""
    sim.reset()
    credential = ShortLivedCredential(life_s=-1.0, claimed_s=3600.0)
    model = _azure_model(sim, entra_credential=_registered("test-dead", credential))
    from prefect_openai_chat.errors import CredentialsRejectedError

    async def call() -> None:
        from prefect_openai_chat.blocks.assembly import RUNNERS

        _, runner = await RUNNERS.assemble(model)
        await runner.complete([{"role": "user", "content": "Hello"}])

    import asyncio

    with pytest.raises(CredentialsRejectedError, match=r"after reloading.*Entra ID.*role"):
        asyncio.run(call())
    assert sim.stats().by_status == {401: 2}  # the first answer, and one retry
    assert credential.calls == 2


# --- azure-identity's provider ---------------------------------------------------------


def test_the_provider_keeps_a_long_token_and_refresh_drops_it() -> None:
    credential = ShortLivedCredential(life_s=3600.0)
    source = entra.TokenSource(credential, entra.SCOPE)
    first = source.token()
    assert source.token() == first and credential.calls == 1  # kept: far from its expiry
    assert source.refresh() and source.refreshes == 1
    assert source.refresh() and source.refreshes == 1  # one refresh for calls failing together
    assert source.token() != first and credential.calls == 2


def test_the_provider_fetches_a_new_token_when_the_kept_one_nears_expiry() -> None:
    credential = ShortLivedCredential(life_s=60.0)  # inside azure-core's 5-minute window
    source = entra.TokenSource(credential, entra.SCOPE)
    assert source.token() != source.token()
    assert credential.calls == 2


def test_the_async_provider_runs_off_the_loop() -> None:
    import asyncio

    credential = ShortLivedCredential(life_s=3600.0)
    source = entra.TokenSource(credential, "api://custom/.default")

    async def twice() -> tuple[str, str]:
        return await source.atoken(), await source.atoken()

    first, second = asyncio.run(twice())
    assert first == second and credential.scopes == [("api://custom/.default",)]


def test_a_credential_that_fails_says_what_to_check() -> None:
    class Refusing:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            from azure.core.exceptions import ClientAuthenticationError

            raise ClientAuthenticationError(f"AADSTS7000215: invalid secret {SECRET}")

    from prefect_openai_chat.errors import CredentialsRejectedError

    name = _registered("test-refusing", ShortLivedCredential(1.0))
    entra.check_choice(entra.EntraChoice(name, client_secret=SECRET))  # remembers the secret
    source = entra.TokenSource(Refusing(), entra.SCOPE)
    with pytest.raises(CredentialsRejectedError, match="AADSTS7000215") as info:
        source.token()
    assert SECRET not in str(info.value) and "entra_credential" in str(info.value)


# --- the block builds the right credential ---------------------------------------------


def test_a_service_principal_gets_a_client_secret_credential() -> None:
    block = AzureOpenAICredentials(
        azure_endpoint=ENDPOINT,
        entra_credential="service_principal",
        tenant_id="00000000-0000-0000-0000-000000000001",
        client_id="00000000-0000-0000-0000-000000000002",
        client_secret=SECRET,
    )
    client = block.get_client(async_client=True)
    assert isinstance(client, openai.AsyncAzureOpenAI)
    source = entra.token_source(block.entra_choice())  # type: ignore[arg-type]
    assert isinstance(source.credential, ClientSecretCredential)
    assert source.scope == "https://cognitiveservices.azure.com/.default"
    assert client._azure_ad_token_provider == source.atoken  # the SDK asks it per request
    sync_client = block.get_client()
    assert sync_client._azure_ad_token_provider == source.token
    assert SECRET not in repr(block) and SECRET not in str(block.cache_key())
    assert redact_text(f"echoed {SECRET}") == "echoed ***"


def test_managed_identity_and_default_credentials() -> None:
    user_assigned = AzureOpenAICredentials(
        azure_endpoint=ENDPOINT, entra_credential="managed_identity", client_id="mi-client-id"
    )
    user_assigned.get_client(async_client=True)
    source = entra.token_source(user_assigned.entra_choice())  # type: ignore[arg-type]
    assert isinstance(source.credential, ManagedIdentityCredential)
    default = AzureOpenAICredentials(
        azure_endpoint=ENDPOINT, entra_credential="default", token_scope="api://x/.default"
    )
    default.get_client(async_client=True)
    source = entra.token_source(default.entra_choice())  # type: ignore[arg-type]
    assert isinstance(source.credential, DefaultAzureCredential)
    assert source.scope == "api://x/.default"


def test_workload_identity_without_its_environment_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    block = AzureOpenAICredentials(azure_endpoint=ENDPOINT, entra_credential="workload_identity")
    with pytest.raises(InvalidInputError, match="workload_identity"):
        block.get_client(async_client=True)


def test_the_client_cache_key_follows_the_choice_not_the_tokens() -> None:
    def block(**fields: Any) -> AzureOpenAICredentials:
        return AzureOpenAICredentials(
            azure_endpoint=ENDPOINT,
            entra_credential="service_principal",
            tenant_id="t",
            client_id="c",
            **fields,
        )

    assert block(client_secret=SECRET).cache_key() == block(client_secret=SECRET).cache_key()
    assert (
        block(client_secret=SECRET).cache_key()
        != block(client_secret="other-secret-99").cache_key()
    )
    managed = AzureOpenAICredentials(azure_endpoint=ENDPOINT, entra_credential="managed_identity")
    assert managed.cache_key() != block(client_secret=SECRET).cache_key()


# --- checked when the block is made ----------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"entra_credential": "service_principal", "tenant_id": "t", "client_id": "c"},
            "needs client_secret",
        ),
        ({"entra_credential": "service_principal"}, "needs tenant_id"),
        ({"entra_credential": "kerberos"}, "'kerberos' is not one of"),
        ({"entra_credential": "default", "api_key": "k" * 20}, "either entra_credential"),
        ({"entra_credential": "default", "token_scope": " "}, "token_scope is empty"),
    ],
)
def test_an_incomplete_choice_fails_when_the_block_is_made(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        AzureOpenAICredentials(azure_endpoint=ENDPOINT, **fields)
    assert "AzureOpenAICredentials" in str(info.value)


def test_without_azure_identity_the_block_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "azure.identity", None)  # as if not installed
    with pytest.raises(ValidationError, match=r"pip install 'prefect-openai-chat\[azure\]'"):
        AzureOpenAICredentials(azure_endpoint=ENDPOINT, entra_credential="managed_identity")


def test_a_saved_block_keeps_the_choice_and_hides_the_secret(isolated_results: None) -> None:
    block = AzureOpenAICredentials(
        azure_endpoint=ENDPOINT,
        entra_credential="service_principal",
        tenant_id="t",
        client_id="c",
        client_secret=SECRET,
    )
    block.save("test-entra-sp", overwrite=True)
    loaded = AzureOpenAICredentials.load("test-entra-sp")
    assert loaded.entra_choice() == block.entra_choice()
    assert SECRET not in loaded.model_dump_json()


# --- the simulator's Azure path ---------------------------------------------------------


def test_the_simulator_serves_azure_deployments_with_a_key_header(sim: Simulator) -> None:
    sim.reset()
    block = AzureOpenAICredentials(
        azure_endpoint=sim.url, azure_deployment="gpt-4o-mini", api_key=sim.api_key
    )
    client = block.get_client()
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello"}]
    )
    assert reply.choices[0].message.content
    wrong = AzureOpenAICredentials(
        azure_endpoint=sim.url, azure_deployment="gpt-4o-mini", api_key="not-a-key-123"
    ).get_client()
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert sim.stats().by_status == {200: 1, 401: 1}
