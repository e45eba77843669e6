"""Splitting batch input at the API's limits, waves by enqueued tokens, result lines by id."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction.batch_api import (
    BatchApiOptions,
    batch_line,
    plan_waves,
    split_lines,
)
from prefect_openai_chat.extraction.batch_api.outputs import read_result_lines


def lines(n: int, tokens: int = 10, text: str = "x") -> list:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    return [batch_line(f"r{i}", body, tokens) for i in range(n)]


def test_batches_are_cut_at_the_request_byte_and_token_limits() -> None:
    many = lines(10)
    assert [len(c) for c in split_lines(many, max_requests=4)] == [4, 4, 2]
    size = len(many[0].data)
    assert [len(c) for c in split_lines(many, max_bytes=3 * size)] == [3, 3, 3, 1]
    assert [len(c) for c in split_lines(many, max_tokens=25)] == [2, 2, 2, 2, 2]
    chunks = split_lines(many, max_requests=3, max_bytes=2 * size)
    assert all(len(c) <= 2 for c in chunks) and sum(map(len, chunks)) == 10
    assert [line.custom_id for c in chunks for line in c] == [f"r{i}" for i in range(10)]


def test_a_line_larger_than_a_batch_is_a_clear_error() -> None:
    with pytest.raises(InvalidInputError, match="exceeds one batch's limit"):
        split_lines(lines(1, tokens=500), max_tokens=100)


def test_waves_keep_the_enqueued_tokens_within_the_limit() -> None:
    chunks = split_lines(lines(10, tokens=30), max_requests=2)  # 60 tokens a batch
    waves = plan_waves(chunks, token_limit=130)
    assert [len(w) for w in waves] == [2, 2, 1]
    assert all(sum(line.tokens for c in w for line in c) <= 130 for w in waves)
    assert len(plan_waves(chunks, None)) == 1 and plan_waves([], 10) == []


def test_result_lines_are_matched_by_custom_id_in_any_order() -> None:
    rows = []
    for i in range(20):
        body = {
            "id": f"chatcmpl-{i}",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": f"answer {i}"},
                }
            ],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100},
        }
        response = {"status_code": 200, "request_id": f"req_{i}", "body": body}
        rows.append({"id": f"b{i}", "custom_id": f"r{i}", "response": response, "error": None})
    random.Random(3).shuffle(rows)
    data = "\n".join(json.dumps(r) for r in rows).encode()
    results = read_result_lines(data, "gpt-4o-mini")
    assert {k: v.answer.content for k, v in results.items()} == {
        f"r{i}": f"answer {i}" for i in range(20)
    }
    one = results["r4"]
    assert one.answer.cost_usd == pytest.approx(one.online_cost_usd / 2)
    assert one.answer.request_id == "req_4"


def test_batch_options_say_what_is_wrong() -> None:
    with pytest.raises(InvalidInputError, match="unknown batch option"):
        BatchApiOptions.from_mapping({"poll_every": 3})
    with pytest.raises(InvalidInputError, match="reask"):
        BatchApiOptions.from_mapping({"reask": "later"})


def test_a_cost_driven_night_is_the_default_and_the_fast_path_one_option_away() -> None:
    assert BatchApiOptions.from_mapping(None).reask == "batch"  # re-asks at the batch price
    assert BatchApiOptions.from_mapping({"reask": "online"}).reask == "online"


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"id": "chatcmpl-1", "choices": []}, "a completion without choices"),
        ({}, "an empty JSON object"),
        ({"choices": ["text"]}, "a choice that is not an object"),
        ({"choices": [{"finish_reason": "stop"}]}, "a choice without a message"),
        ({"choices": [{"message": "hi", "finish_reason": "stop"}]}, "not an object"),
    ],
)
def test_a_200_line_whose_completion_is_malformed_is_that_record_s_malformed_line(
    body: dict[str, Any], said: str
) -> None:
    """Read as the online path reads an answer: what is wrong is the record's reason (and
    the record is asked again), never an exception that would stop the night."""
    line = {"custom_id": "k", "response": {"status_code": 200, "request_id": "req_1", "body": body}}
    result = read_result_lines(json.dumps(line).encode(), "gpt-4o-mini")["k"]
    assert result.answer is None and result.code == "malformed_line"
    assert said in str(result.error) and "req_1" in str(result.error)
