"""A lone surrogate (half of a UTF-16 pair, half an emoji) in what a model writes.

UTF-8 cannot encode one, so a value holding one is not storable (re-asked, then
quarantined as `invalid`), and every text the plugin keeps or sends back to the model
carries its escape instead. `tests/fuzz` runs whole nights over such answers, one per
output kind (`answer-lone-surrogate-*`).
"""

from __future__ import annotations

import json

from pydantic import BaseModel

from prefect_openai_chat.extraction import reprompt_messages
from prefect_openai_chat.extraction.prompts import build_partial_request
from prefect_openai_chat.extraction.storable import unstorable
from prefect_openai_chat.redaction import bounded_text
from prefect_openai_chat.surrogates import escape_surrogates, lone_surrogate

HALF = "\ud83d"  # the first half of 😀


class Status(BaseModel):
    status: str


def test_a_lone_surrogate_anywhere_in_a_value_is_not_storable() -> None:
    assert unstorable({"name": f"Zoë {HALF}"}) == (
        "field 'name': holds a lone surrogate (\\ud83d), half of a UTF-16 pair:"
        " no UTF-8 text holds it"
    )
    nested = unstorable({"items": [{"tags": ["ok", "\udc00"]}]})
    assert nested is not None
    assert nested.startswith("field 'items[0].tags[1]': holds a lone surrogate (\\udc00)")
    key = unstorable({"attributes": {f"k{HALF}": 1}})
    assert key is not None
    assert key.startswith("field 'attributes': a key holds a lone surrogate (\\ud83d)")
    # a whole pair, and text that is not ASCII, are fine
    assert unstorable({"name": "Zoë 😀", "note": "\U0001f600"}) is None


def test_kept_text_carries_the_escape_and_encodes_as_utf8() -> None:
    kept = bounded_text(f"invalid: input_value='va {HALF}'", limit=4096)
    assert kept == "invalid: input_value='va \\ud83d'"
    kept.encode("utf-8")
    # long text: escaped, then capped on whole characters
    capped = bounded_text(HALF * 3000, limit=100, what="the raw output")
    assert capped.startswith("\\ud83d" * 16) and "bytes cut" in capped
    capped.encode("utf-8")


def test_what_goes_back_to_the_model_carries_the_escape() -> None:
    messages = reprompt_messages(
        [{"role": "user", "content": "Ticket 7"}],
        f'{{"status": "open {HALF}"}}',
        f"field 'status': holds a lone surrogate ({lone_surrogate(HALF)}) {HALF}",
    )
    json.dumps(messages, ensure_ascii=False).encode("utf-8")  # what the request body needs
    assert messages[1]["content"] == '{"status": "open \\ud83d"}'
    partial, _ = build_partial_request(
        Status, "Ticket 7", {"status": f"open {HALF}"}, f"fix {HALF}", model="gpt-4o-mini"
    )
    json.dumps(partial, ensure_ascii=False).encode("utf-8")
    assert partial[-2]["content"] == '{"status":"open \\ud83d"}'
    assert partial[-1]["content"] == "fix \\ud83d"


def test_escape_keeps_every_other_character() -> None:
    text = "plain ascii, Zoë, 😀, 中文"
    assert escape_surrogates(text) is text
    assert lone_surrogate(text) is None
    assert escape_surrogates(f"a{HALF}b\udfffc") == "a\\ud83db\\udfffc"
    assert escape_surrogates(None) is None
