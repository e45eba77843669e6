"""Issue 23: `ChatModel` nests its settings in sections; a block document saved with the old
flat layout still loads (with a DeprecationWarning), is stored nested once saved again, and
one that says a setting two different ways fails with how to save it again. The documents
are real ones in the Prefect test server, written through its API."""

from __future__ import annotations

import logging
import uuid
import warnings
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import BlockDocumentUpdate
from pydantic import ValidationError

from prefect_openai_chat import AzureOpenAICredentials, ChatModel, OpenAICredentials
from prefect_openai_chat.blocks.sections import FLAT_FIELDS, Retries
from prefect_openai_chat.resilience import RetryPolicy

SECRET = "sk-test-layout-1234567890"
OLD_LAYOUT = {
    "max_attempts": 2,
    "backoff_base_s": 0.25,
    "retry_budget_ratio": 0.5,
    "circuit_failures": 3,
    "circuit_reset_timeout_s": 7.0,
    "outage_patience_s": 9.0,
    "read_timeout_s": 11.0,
    "call_timeout_s": 99.0,
    "requests_per_minute": 120,
    "max_connections": 8,
    "error_overrides": {"409": "fail"},
    "circuit_redis_url": "redis://127.0.0.1:6379/0",
}


def _store_data(name: str, data: dict[str, Any]) -> None:
    """Replace the saved document's data as an older version of the plugin would have
    written it (the credentials stay a reference to their own document)."""
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(name, "openai-chat-model")
        client.update_block_document(
            document.id, BlockDocumentUpdate(data=data, merge_existing_data=False)
        )


def _stored_data(name: str) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        return dict(client.read_block_document_by_name(name, "openai-chat-model").data)


def _saved_flat_block() -> tuple[str, dict[str, Any]]:
    name = f"flat-{uuid.uuid4().hex[:8]}"
    credentials = OpenAICredentials(api_key=SECRET, base_url="http://127.0.0.1:9/v1")
    ChatModel(credentials=credentials, model="gpt-4o-mini-2024-07-18").save(name)
    data = _stored_data(name)
    for section in ("timeouts", "retries", "circuit", "limits", "redis_url"):
        data.pop(section, None)
    return name, data


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_block_saved_with_the_flat_layout_loads_and_is_stored_nested_once_saved() -> None:
    name, data = _saved_flat_block()
    _store_data(name, {**data, **OLD_LAYOUT})
    assert set(OLD_LAYOUT) - {"circuit_redis_url"} <= set(_stored_data(name))

    with pytest.warns(DeprecationWarning, match=r"old flat layout.*save\(NAME, overwrite=True\)"):
        loaded = ChatModel.load(name)

    assert loaded.credentials.resolve_api_key() == SECRET
    assert loaded.retries.model_dump() == {
        **Retries().model_dump(),
        "max_attempts": 2,
        "backoff_base_s": 0.25,
        "budget_ratio": 0.5,
        "error_overrides": {"409": "fail"},
    }
    assert (loaded.circuit.failures, loaded.circuit.reset_timeout_s) == (3, 7.0)
    assert loaded.circuit.outage_patience_s == 9.0
    assert (loaded.timeouts.read_s, loaded.timeouts.call_s) == (11.0, 99.0)
    assert (loaded.limits.requests_per_minute, loaded.limits.max_connections) == (120, 8)
    assert loaded.shared_redis_url() == OLD_LAYOUT["circuit_redis_url"]
    policy = loaded.retry_policy()
    assert policy == RetryPolicy(
        max_attempts=2,
        backoff_base=0.25,
        task_retry_delay_s=7.0,
        outage_patience_s=9.0,
        overrides={"409": "fail"},
    )

    loaded.save(name, overwrite=True)
    stored = _stored_data(name)
    assert not set(FLAT_FIELDS) & set(stored), "saved again, the old flat keys are gone"
    assert stored["retries"]["max_attempts"] == 2 and stored["circuit"]["failures"] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        again = ChatModel.load(name)
    assert again.retry_policy() == policy and again.limits == loaded.limits


@pytest.mark.usefixtures("prefect_harness")
def test_a_block_that_says_a_setting_two_ways_fails_saying_how_to_save_it_again() -> None:
    name, data = _saved_flat_block()
    _store_data(name, {**data, "circuit_failures": 3, "circuit": {"failures": 4}})
    with pytest.raises(RuntimeError, match="failed validation") as info, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ChatModel.load(name)
    assert isinstance(info.value.__cause__, ValidationError)  # Prefect chains the reason
    text = str(info.value.__cause__)
    assert "circuit_failures=3 (the old flat layout) and circuit.failures=4 disagree" in text
    assert "save(NAME, overwrite=True)" in text


def test_each_default_is_the_cores() -> None:
    """The block's defaults are read from the core's objects, not written again."""
    model = ChatModel()
    assert model.retry_policy() == RetryPolicy()
    assert model.circuit.settings() == type(model.circuit.settings())()
    assert model.endpoint == "https://api.openai.com/v1" == model.chat_settings().base_url


def test_a_misspelt_section_setting_is_an_error() -> None:
    with pytest.raises(ValidationError, match="max_attempt"):
        ChatModel(retries={"max_attempt": 2})


@pytest.mark.usefixtures("prefect_harness")
def test_saving_a_model_names_each_fallback_that_could_not_be_called(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    suffix = uuid.uuid4().hex[:8]
    keyless, good, missing = f"keyless-{suffix}", f"good-{suffix}", f"missing-{suffix}"
    ChatModel(
        credentials=AzureOpenAICredentials(azure_endpoint="https://x.openai.azure.com"),
        model="gpt-4o-mini-2024-07-18",
    ).save(keyless)
    ChatModel(credentials=OpenAICredentials(api_key=SECRET)).save(good)
    primary = ChatModel(
        credentials=OpenAICredentials(api_key=SECRET), fallback_models=[keyless, good, missing]
    )
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("prefect_openai_chat")
    logger.addHandler(handler)
    try:
        primary.save(f"primary-{suffix}")
    finally:
        logger.removeHandler(handler)
    said = [r.getMessage() for r in records if "fallback" in r.getMessage()]
    assert len(said) == 2, said
    assert f"fallback {keyless!r} has no usable credential: no Azure OpenAI credential" in said[0]
    assert f"fallback {missing!r} is not a saved ChatModel block" in said[1]
    assert all(SECRET not in text for text in said)
