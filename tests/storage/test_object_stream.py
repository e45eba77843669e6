"""Reading a source on S3 as one streaming GET (`storage.stream.ObjectStream`), against a
real S3 API (moto's server on loopback): one request a pass, a broken connection resumed
at the first byte not yet read, a source replaced meanwhile refused."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from prefect_openai_chat.flows.sources import check_source, count_records, read_records
from prefect_openai_chat.storage import locate
from prefect_openai_chat.storage.stream import ObjectStream


def _data(lines: int) -> bytes:
    return b"".join(
        (json.dumps({"ticket_id": f"T-{n}", "text": "x" * (n % 300)}) + "\n").encode()
        for n in range(lines)
    )


def _break_connection(stream: ObjectStream) -> None:
    """Close the body's connection from the client's event loop, as a reset would."""
    body = stream._body
    assert body is not None
    stream._fs.loop.call_soon_threadsafe(body.close)
    time.sleep(0.2)


def test_a_pass_over_the_source_is_one_get_whatever_its_size(
    s3: Any, s3_options: dict[str, Any], bucket: str
) -> None:
    data = _data(5000)  # ~1 MB: sixteen 64 KiB chunks, read as one GET
    s3.pipe_file(f"{bucket}/in.jsonl", data)
    location = locate(f"s3://{bucket}/in.jsonl", s3_options)
    with location.open_read(block_size=64 * 1024) as handle:
        assert isinstance(handle.raw, ObjectStream)  # type: ignore[attr-defined]
        read = b"".join(handle)
        assert handle.raw.requests == 1  # type: ignore[attr-defined]
    assert read == data
    assert count_records(location) == 5000
    assert [item.line for item in read_records(location)] == list(range(1, 5001))


def test_a_broken_connection_is_resumed_at_the_first_byte_not_read(
    s3: Any, s3_options: dict[str, Any], bucket: str
) -> None:
    data = _data(5000)
    s3.pipe_file(f"{bucket}/in.jsonl", data)
    location = locate(f"s3://{bucket}/in.jsonl", s3_options)
    with location.open_read(block_size=64 * 1024) as handle:
        stream: ObjectStream = handle.raw  # type: ignore[attr-defined]
        head = handle.read(100_000)
        _break_connection(stream)
        rest = handle.read()
        assert stream.requests == 2
    assert head + rest == data


def test_a_source_replaced_while_it_is_read_is_refused_not_spliced(
    s3: Any, s3_options: dict[str, Any], bucket: str
) -> None:
    data = _data(5000)
    s3.pipe_file(f"{bucket}/in.jsonl", data)
    location = check_source(f"s3://{bucket}/in.jsonl", s3_options)
    with location.open_read(block_size=64 * 1024) as handle:  # type: ignore[union-attr]
        handle.read(100_000)
        s3.pipe_file(f"{bucket}/in.jsonl", data.replace(b"T-", b"U-"))
        _break_connection(handle.raw)  # type: ignore[attr-defined]
        with pytest.raises(OSError, match="was replaced while it was read"):
            handle.read()


def test_an_empty_object_reads_as_nothing(s3: Any, s3_options: dict[str, Any], bucket: str) -> None:
    s3.pipe_file(f"{bucket}/in.jsonl", b"")
    with locate(f"s3://{bucket}/in.jsonl", s3_options).open_read() as handle:
        assert handle.read() == b""
