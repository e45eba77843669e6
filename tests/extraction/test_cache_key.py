"""Cache keys: what determines the answer changes the key; clients and secrets never do."""

from __future__ import annotations

from typing import Any

import pytest
from extraction_models import PERSON_TEXT, Person, Ticket
from pydantic import BaseModel, SecretStr

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction import extraction_cache_key

BASE: dict[str, Any] = {
    "schema": Person,
    "messages_or_text": PERSON_TEXT,
    "instructions": None,
    "mode": "auto",
    "model": "gpt-4o-mini",
    "generation_params": {"temperature": 0, "seed": 7},
}


def _key(**changes: Any) -> str:
    return extraction_cache_key(**{**BASE, **changes})


def test_same_inputs_same_key() -> None:
    assert _key() == _key() and len(_key()) == 64
    assert _key(generation_params={"seed": 7, "temperature": 0}) == _key()  # order-free


class PersonV2(BaseModel):
    name: str
    age: float
    email: str


@pytest.mark.parametrize(
    "changes",
    [
        {"messages_or_text": PERSON_TEXT + "."},
        {"messages_or_text": [{"role": "user", "content": PERSON_TEXT}]},
        {"schema": Ticket},
        {"schema": PersonV2},
        {"instructions": "Extract the person."},
        {"mode": "json_object"},
        {"model": "gpt-4o"},
        {"generation_params": {"temperature": 0.2, "seed": 7}},
        {"generation_params": {"temperature": 0, "seed": 7, "max_completion_tokens": 100}},
    ],
)
def test_what_determines_the_answer_changes_the_key(changes: dict[str, Any]) -> None:
    assert _key(**changes) != _key()


def test_auto_is_resolved_before_hashing() -> None:
    assert _key(mode="json_schema") == _key()
    assert _key(mode="json_object", model="gpt-3.5-turbo") == _key(model="gpt-3.5-turbo")


def test_clients_and_credentials_never_take_part() -> None:
    noisy = {
        **BASE["generation_params"],
        "api_key": "sk-secret",
        "timeout": 30,
        "extra_headers": {"Authorization": "Bearer sk-secret"},
        "client": object(),
        "max_retries": 0,
        "my_secret_token": SecretStr("x"),
    }
    assert _key(generation_params=noisy) == _key()


def test_unhashable_parameters_are_a_clear_error() -> None:
    with pytest.raises(InvalidInputError, match="'callback'"):
        _key(generation_params={"callback": object()})


class City(BaseModel):
    name: str
    n: int | None = None


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (
            (City, "Oslo ü", "Be brief", "auto", "gpt-4o-mini", {"temperature": 0, "seed": 3}),
            "4986a169edb2801cde3b6ca7709c68d77d03cdd4985d7974c8c47fe9350914fa",
        ),
        (
            (
                City,
                [{"role": "user", "content": "x", "b": {"z": 1}}],
                None,
                "json_object",
                "m",
                None,
            ),
            "0dca5ea015c23a932e4e58e33bde25510df2433ed18fb90b8e1eaf3b60207941",
        ),
    ],
)
def test_keys_stay_the_same_across_versions(args: tuple[Any, ...], key: str) -> None:
    """A ledger written by an earlier version is still found: the keys of fixed inputs are
    pinned (computed by the version before the key's suffix was cached)."""
    assert extraction_cache_key(*args) == key
