"""The one redaction module: what it masks, what it leaves alone, and the cause chain."""

from __future__ import annotations

import pytest

from prefect_openai_chat.errors import add_note
from prefect_openai_chat.redaction import redact_exception, redact_text, remember_secret


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk-proj-abc123XYZ_-9 rejected", "key *** rejected"),
        ("Authorization: Bearer eyJhbGciOi.payload.sig", "Authorization: ***"),
        ("the task-runner and risk-assessment stay", "the task-runner and risk-assessment stay"),
        ("sk-1 is too short to be a key", "sk-1 is too short to be a key"),
    ],
)
def test_shapes(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_remembered_secrets_are_masked_and_short_ones_ignored() -> None:
    remember_secret("plain-secret-value-42")
    remember_secret("abc")  # too short: masking it would mangle ordinary words
    assert redact_text("got plain-secret-value-42, abc") == "got ***, abc"


def test_exception_message_args_notes_and_chain() -> None:
    remember_secret("chain-secret-0123456789")
    try:
        try:
            raise ConnectionError("inner saw chain-secret-0123456789")
        except ConnectionError as inner:
            raise RuntimeError("outer saw chain-secret-0123456789") from inner
    except RuntimeError as outer:
        add_note(outer, "note with chain-secret-0123456789")
        redact_exception(outer)
        assert "chain-secret" not in str(outer)
        assert "chain-secret" not in repr(outer.__notes__)
        assert outer.__cause__ is not None and "chain-secret" not in str(outer.__cause__)
