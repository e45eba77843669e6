"""The simulator's Files and Batch APIs through the real `openai` client."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import openai
import pytest

from prefect_openai_chat.simulator import Simulator

LONG_SYSTEM = "Read the ticket and extract the order number. " * 120  # about 1,200 tokens


def request_line(custom_id: str, text: str = "Hello", **body: Any) -> str:
    payload = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": text}],
        **body,
    }
    return json.dumps(
        {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": payload}
    )


def create_batch(client: Any, lines: list[str]) -> Any:
    data = io.BytesIO("\n".join(lines).encode())
    file = client.files.create(file=("in.jsonl", data), purpose="batch")
    return client.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )


def wait(client: Any, batch_id: str, seen: list[str] | None = None) -> Any:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if seen is not None and (not seen or seen[-1] != batch.status):
            seen.append(batch.status)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        time.sleep(0.02)
    raise AssertionError("the batch did not end")


def lines_of(client: Any, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def test_a_batch_goes_through_every_stage_and_answers_each_line(batch_sim: Simulator) -> None:
    client = batch_sim.client()
    ids = [f"r{i}" for i in range(12)]
    batch = create_batch(
        client, [request_line(i, f"Order ORD-{10000 + n}") for n, i in enumerate(ids)]
    )
    assert batch.status == "validating" and batch.request_counts.total == 12
    seen: list[str] = []
    batch = wait(client, batch.id, seen)
    assert seen[-1] == "completed" and seen.index("in_progress") < seen.index("completed")
    assert batch.request_counts.completed == 12 and batch.request_counts.failed == 0
    output = lines_of(client, batch.output_file_id)
    assert [line["custom_id"] for line in output] == ids
    first = output[0]
    assert set(first) == {"id", "custom_id", "response", "error"} and first["error"] is None
    assert first["response"]["status_code"] == 200
    assert first["response"]["body"]["object"] == "chat.completion"
    assert first["response"]["body"]["usage"]["prompt_tokens"] > 0
    assert batch.error_file_id is None
    stats = batch_sim.stats()
    assert (stats.files_uploaded, stats.batches_created, stats.batch_requests) == (1, 1, 12)
    assert stats.requests == 0  # no online chat request was made


def test_a_batch_with_bad_lines_fails_validation_naming_each_line(batch_sim: Simulator) -> None:
    client = batch_sim.client()
    bad_url = json.loads(request_line("b"))
    bad_url["url"] = "/v1/embeddings"
    batch = create_batch(client, [request_line("a"), json.dumps(bad_url), request_line("a"), "{"])
    batch = wait(client, batch.id)
    assert batch.status == "failed" and batch.output_file_id is None
    errors = {(e.line, e.code) for e in batch.errors.data}
    assert errors == {
        (2, "mismatched_endpoint"),
        (3, "duplicate_custom_id"),
        (4, "invalid_json_line"),
    }


def test_an_expiring_batch_keeps_what_it_answered(batch_sim: Simulator) -> None:
    batch_sim.configure(batch_faults=["expire"])
    client = batch_sim.client()
    batch = wait(client, create_batch(client, [request_line(f"r{i}") for i in range(10)]).id)
    assert batch.status == "expired"
    answered = lines_of(client, batch.output_file_id)
    late = lines_of(client, batch.error_file_id)
    assert 0 < len(answered) < 10 and len(answered) + len(late) == 10
    assert {line["error"]["code"] for line in late} == {"batch_expired"}
    assert all(line["response"] is None for line in late)


def test_a_cancelled_batch_stops_and_says_which_lines_were_not_run(batch_sim: Simulator) -> None:
    batch_sim.configure(batch_duration_s=5.0)
    client = batch_sim.client()
    batch = create_batch(client, [request_line(f"r{i}") for i in range(10)])
    assert client.batches.cancel(batch.id).status == "cancelling"
    batch_sim.configure(batch_duration_s=0.2)
    batch = wait(client, batch.id)
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    late = lines_of(client, batch.error_file_id)
    assert {line["error"]["code"] for line in late} == {"batch_cancelled"}


def test_failed_lines_go_to_the_error_file_and_output_comes_shuffled(batch_sim: Simulator) -> None:
    batch_sim.configure(batch_faults=["line-errors", "shuffle"])
    client = batch_sim.client()
    ids = [f"r{i:02d}" for i in range(60)]
    batch = wait(client, create_batch(client, [request_line(i) for i in ids]).id)
    output = lines_of(client, batch.output_file_id)
    errors = lines_of(client, batch.error_file_id)
    assert sorted(line["custom_id"] for line in output + errors) == ids
    assert [line["custom_id"] for line in output] != sorted(line["custom_id"] for line in output)
    assert sorted(line["custom_id"] for line in errors) == ids[::10]  # one line in ten
    assert {line["response"]["status_code"] for line in errors} == {500}
    assert batch.request_counts.failed == len(errors)


def test_files_and_batches_answer_bad_calls_like_the_api(batch_sim: Simulator) -> None:
    client = batch_sim.client()
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-missing")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_missing")
    with pytest.raises(openai.BadRequestError, match="completion_window"):
        file = client.files.create(file=("in.jsonl", io.BytesIO(b"{}")), purpose="batch")
        client.batches.create(
            input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="1h"
        )
    assert client.files.retrieve(file.id).bytes == 2


def test_the_enqueued_token_limit_fails_a_batch_that_does_not_fit(batch_sim: Simulator) -> None:
    batch_sim.configure(batch_enqueued_token_limit=60, batch_duration_s=5.0)
    client = batch_sim.client()
    first = create_batch(client, [request_line(f"r{i}") for i in range(5)])  # 40 prompt tokens
    second = wait(client, create_batch(client, [request_line(f"s{i}") for i in range(5)]).id)
    assert second.status == "failed" and second.errors.data[0].code == "token_limit_exceeded"
    listed = client.batches.list(limit=1)
    assert [b.id for b in listed.data] == [second.id] and listed.has_more
    assert client.batches.list(after=second.id).data[0].id == first.id


def test_a_long_prefix_seen_before_is_reported_as_cached(batch_sim: Simulator) -> None:
    client = batch_sim.client()

    def cached(text: str, system: str = LONG_SYSTEM) -> tuple[int, int]:
        reply = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "system", "content": system}, {"role": "user", "content": text}],
        )
        return reply.usage.prompt_tokens, reply.usage.prompt_tokens_details.cached_tokens

    prompt, first = cached("Order ORD-12345 is late.")
    _, second = cached("Order ORD-54321 never came.")
    assert prompt >= 1024 and first == 0
    assert second >= 1024 and second % 128 == 0 and second <= prompt
    assert cached("short", system="Be brief.")[1] == 0  # below 1,024 tokens: never cached
    assert batch_sim.stats().cached_tokens == second


def test_files_live_on_disk_and_an_ended_batch_lets_its_lines_go() -> None:
    """A million-record night must fit the simulator too: file contents are on disk, and a
    batch that has ended keeps its answers in its result files, not its lines in memory."""
    from prefect_openai_chat.simulator.batches import BatchStore

    store = BatchStore()
    lines = [request_line(f"r{i}", f"Order ORD-{10000 + i}") for i in range(5)]
    upload = store.add_file("\n".join(lines).encode(), "in.jsonl", "batch")
    assert (store.contents.folder / upload["id"]).stat().st_size == upload["bytes"]
    job = store.create("sk-test", upload["id"], None, (), 0.0, lambda body: 10, None)

    def answer(key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], Any]:
        return 200, {"echo": body["messages"][0]["content"]}, None

    store.refresh(job, answer)
    assert job.status == "completed" and job.lines == []
    assert store.body(job)["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
    output = store.contents[job.output_file_id or ""].decode().splitlines()
    assert sorted(json.loads(row)["custom_id"] for row in output) == [f"r{i}" for i in range(5)]
