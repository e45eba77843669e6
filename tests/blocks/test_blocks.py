"""Blocks: Prefect's standard checks, save/load through a server, secrets kept secret."""

from __future__ import annotations

import asyncio

import openai
import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import ValidationError

from prefect_openai_chat import AzureOpenAICredentials, ChatModel, OpenAICredentials
from prefect_openai_chat.blocks import Timeouts
from prefect_openai_chat.errors import InvalidInputError

SECRET = "sk-test-do-not-show-1234567890"


class _OfflineBlockChecks(BlockStandardTestSuite):
    def test_has_a_valid_image(self, block: type[Block]) -> None:  # type: ignore[override]
        # The upstream check downloads the logo; here we only check that one is set.
        assert str(block._logo_url).startswith("https://")


class TestOpenAICredentialsStandard(_OfflineBlockChecks):
    @pytest.fixture
    def block(self) -> type[Block]:
        return OpenAICredentials


class TestAzureCredentialsStandard(_OfflineBlockChecks):
    @pytest.fixture
    def block(self) -> type[Block]:
        return AzureOpenAICredentials


class TestChatModelStandard(_OfflineBlockChecks):
    @pytest.fixture
    def block(self) -> type[Block]:
        return ChatModel


def test_secret_never_in_repr_or_dump() -> None:
    model = ChatModel(credentials=OpenAICredentials(api_key=SECRET), model="gpt-4o-mini")
    assert SECRET not in repr(model)
    assert SECRET not in str(model)
    assert SECRET not in model.model_dump_json()
    assert SECRET not in str(model.credentials.cache_key())


def test_client_has_sdk_retries_off_and_split_timeouts() -> None:
    model = ChatModel(
        credentials=OpenAICredentials(api_key=SECRET, base_url="http://127.0.0.1:9/v1"),
        timeouts=Timeouts(connect_s=1.5, read_s=7.0),
    )
    client = model.get_client()
    assert isinstance(client, openai.OpenAI)
    assert client.max_retries == 0
    assert client.timeout.connect == 1.5 and client.timeout.read == 7.0
    async_client = asyncio.run(_async_client(model))
    assert isinstance(async_client, openai.AsyncOpenAI) and async_client.max_retries == 0


async def _async_client(model: ChatModel) -> openai.AsyncOpenAI:
    return model.get_client(async_client=True)  # type: ignore[return-value]


def test_api_key_falls_back_to_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    assert OpenAICredentials().resolve_api_key() == "sk-from-env"
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(InvalidInputError, match="OPENAI_API_KEY"):
        OpenAICredentials().get_client()


def test_azure_builds_azure_clients() -> None:
    credentials = AzureOpenAICredentials(
        azure_endpoint="https://example.openai.azure.com",
        azure_deployment="gpt4o",
        api_key=SECRET,
    )
    client = credentials.get_client()
    assert isinstance(client, openai.AzureOpenAI) and client.max_retries == 0
    assert "gpt4o" in str(client.base_url)
    assert SECRET not in repr(credentials)


def test_azure_without_any_secret_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    credentials = AzureOpenAICredentials(azure_endpoint="https://example.openai.azure.com")
    with pytest.raises(InvalidInputError, match="api_key or azure_ad_token"):
        credentials.get_client()


def test_async_clients_are_cached_per_loop_and_closed_with_it() -> None:
    model = ChatModel(
        credentials=OpenAICredentials(api_key=SECRET, base_url="http://127.0.0.1:9/v1")
    )
    assert model.get_client() is not model.get_client()  # sync: a new client to keep

    async def twice() -> tuple[openai.AsyncOpenAI, openai.AsyncOpenAI]:
        return _async_pair(model)

    first_a, first_b = asyncio.run(twice())
    second_a, _ = asyncio.run(twice())
    assert first_a is first_b
    assert first_a is not second_a  # a new event loop gets its own client
    assert first_a.is_closed() and second_a.is_closed()  # asyncio.run shut their loops down


def _async_pair(model: ChatModel) -> tuple[openai.AsyncOpenAI, openai.AsyncOpenAI]:
    return model.get_client(async_client=True), model.get_client(async_client=True)  # type: ignore[return-value]


def test_floating_alias_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    model = ChatModel(credentials=OpenAICredentials(api_key=SECRET), model="gpt-4.1-nano")
    with caplog.at_level("WARNING", logger="prefect_openai_chat"):
        model.chat_settings()
        model.chat_settings()
    assert sum("floating alias" in r.getMessage() for r in caplog.records) == 1
    pinned = ChatModel(
        credentials=OpenAICredentials(api_key=SECRET), model="gpt-4.1-nano-2025-04-14"
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="prefect_openai_chat"):
        pinned.chat_settings()
    assert not caplog.records


def test_temperature_and_top_p_both_changed_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="prefect_openai_chat"):
        ChatModel(credentials=OpenAICredentials(api_key=SECRET), temperature=0.2, top_p=0.5)
    assert any("temperature and top_p" in r.getMessage() for r in caplog.records)


@pytest.mark.usefixtures("prefect_harness")
def test_blocks_save_and_load_through_prefect_server() -> None:
    credentials = OpenAICredentials(api_key=SECRET, base_url="http://127.0.0.1:9/v1")
    model = ChatModel(credentials=credentials, model="gpt-4o-mini-2024-07-18", temperature=0.0)
    model.save("test-chat-model", overwrite=True)
    loaded = ChatModel.load("test-chat-model")
    assert loaded.model == "gpt-4o-mini-2024-07-18"
    assert loaded.temperature == 0.0
    assert isinstance(loaded.credentials, OpenAICredentials)
    assert loaded.credentials.resolve_api_key() == SECRET
    assert SECRET not in repr(loaded)
    azure = AzureOpenAICredentials(azure_endpoint="https://x.openai.azure.com", api_key=SECRET)
    azure.save("test-azure", overwrite=True)
    assert AzureOpenAICredentials.load("test-azure").resolve_api_key() == SECRET


# --- issue #10, defect 8: the circuit's Redis URL is checked when the block is made ------


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://u:pw@cache:6380/1", "unix:///tmp/redis.sock"]
)
def test_redis_url_schemes_accepted(url: str) -> None:
    model = ChatModel(redis_url=url)
    assert model.redis_url is not None
    assert model.redis_url.get_secret_value() == url == model.shared_redis_url()


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379/0", "127.0.0.1:6379", "redis:/oops", "postgres://u:pw@db/x"]
)
def test_redis_url_with_a_bad_scheme_fails_when_the_block_is_made(url: str) -> None:
    with pytest.raises(ValidationError) as info:
        ChatModel(redis_url=url)
    text = str(info.value)
    assert "redis_url must start with redis://, rediss:// or unix://" in text
    assert "pw" not in text  # the URL's password is never shown


def test_empty_redis_url_keeps_circuits_local() -> None:
    assert ChatModel(redis_url="").shared_redis_url() is None
