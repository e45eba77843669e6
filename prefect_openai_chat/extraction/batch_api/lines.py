"""Batch input lines, split at the API's limits, and planned in waves by enqueued tokens.

A batch holds at most 50,000 requests and 200 MB; a model may have only so many
prompt tokens in unfinished batches (its enqueued-token limit). `split_lines` cuts
the lines into batches that respect all three; `plan_waves` groups batches into
waves that are submitted together, the next wave once the previous one has ended.

Example:
    >>> lines = [batch_line(f"r{i}", {"model": "m", "messages": []}, tokens=40) for i in range(5)]
    >>> [len(chunk) for chunk in split_lines(lines, max_requests=2)]
    [2, 2, 1]
    >>> [len(wave) for wave in plan_waves(split_lines(lines, max_requests=2), token_limit=160)]
    [2, 1]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from prefect_openai_chat.errors import InvalidInputError

MAX_BATCH_REQUESTS = 50_000
MAX_BATCH_BYTES = 200 * 1024 * 1024
BATCH_ENDPOINT: Final = "/v1/chat/completions"


@dataclass(frozen=True)
class BatchLine:
    """One request of a batch input file: its id, its JSONL bytes and its prompt tokens."""

    custom_id: str
    data: bytes
    tokens: int


def batch_line(custom_id: str, body: dict[str, Any], tokens: int) -> BatchLine:
    """The JSONL line of one chat completion request `body` (as the online call sends it).

    Example:
        >>> batch_line("k1", {"model": "m", "messages": []}, 3).data[:30]
        b'{"custom_id":"k1","method":"PO'
    """
    line = {"custom_id": custom_id, "method": "POST", "url": BATCH_ENDPOINT, "body": body}
    data = json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
    return BatchLine(custom_id, data, tokens)


def split_lines(
    lines: Sequence[BatchLine],
    max_requests: int = MAX_BATCH_REQUESTS,
    max_bytes: int = MAX_BATCH_BYTES,
    max_tokens: int | None = None,
) -> list[list[BatchLine]]:
    """Consecutive batches of `lines`, each within the request, byte and token limits.

    Raises:
        InvalidInputError: a single line is larger than `max_bytes` or `max_tokens`.
    """
    if max_requests < 1 or max_bytes < 1 or (max_tokens is not None and max_tokens < 1):
        raise InvalidInputError("batch limits (requests, bytes, tokens) must be at least 1")
    chunks: list[list[BatchLine]] = []
    current: list[BatchLine] = []
    size = tokens = 0
    for line in lines:
        if len(line.data) > max_bytes or (max_tokens is not None and line.tokens > max_tokens):
            raise InvalidInputError(
                f"the request of record {line.custom_id[:16]} alone ({len(line.data)} bytes,"
                f" {line.tokens} prompt tokens) exceeds one batch's limit; shorten the record"
                " or run it online (via='online')"
            )
        full = (
            len(current) >= max_requests
            or size + len(line.data) > max_bytes
            or (max_tokens is not None and tokens + line.tokens > max_tokens)
        )
        if current and full:
            chunks.append(current)
            current, size, tokens = [], 0, 0
        current.append(line)
        size += len(line.data)
        tokens += line.tokens
    if current:
        chunks.append(current)
    return chunks


def plan_waves(
    chunks: Sequence[Sequence[BatchLine]], token_limit: int | None
) -> list[list[Sequence[BatchLine]]]:
    """Group batches into waves whose prompt tokens stay within `token_limit` (None: one wave)."""
    if token_limit is None:
        return [list(chunks)] if chunks else []
    waves: list[list[Sequence[BatchLine]]] = []
    current: list[Sequence[BatchLine]] = []
    queued = 0
    for chunk in chunks:
        tokens = sum(line.tokens for line in chunk)
        if current and queued + tokens > token_limit:
            waves.append(current)
            current, queued = [], 0
        current.append(chunk)
        queued += tokens
    if current:
        waves.append(current)
    return waves
