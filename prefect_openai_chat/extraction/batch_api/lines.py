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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from prefect_openai_chat.errors import InvalidInputError

MAX_BATCH_REQUESTS = 50_000
MAX_BATCH_BYTES = 200 * 1024 * 1024
BATCH_ENDPOINT: Final = "/v1/chat/completions"
C = TypeVar("C")  # a planned batch: a list of lines, or the night's `Planned`


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


Span = tuple[str, str, int, int]  # a batch: first and last custom id, requests, prompt tokens


def batch_spans(
    entries: Iterable[tuple[str, int, int]],
    max_requests: int = MAX_BATCH_REQUESTS,
    max_bytes: int = MAX_BATCH_BYTES,
    max_tokens: int | None = None,
) -> Iterator[Span]:
    """Consecutive batches of `entries` (`(custom_id, bytes, prompt tokens)` of each line,
    in order), each within the request, byte and token limits, as they are read: the
    night plans a million lines this way without holding them.

    Example:
        >>> list(batch_spans([("a", 10, 4), ("b", 10, 4), ("c", 10, 4)], max_bytes=25))
        [('a', 'b', 2, 8), ('c', 'c', 1, 4)]

    Raises:
        InvalidInputError: a limit below 1, or a single line larger than `max_bytes` or
            `max_tokens`.
    """
    if max_requests < 1 or max_bytes < 1 or (max_tokens is not None and max_tokens < 1):
        raise InvalidInputError("batch limits (requests, bytes, tokens) must be at least 1")
    first = last = ""
    count = size = tokens = 0
    for custom_id, line_size, line_tokens in entries:
        if line_size > max_bytes or (max_tokens is not None and line_tokens > max_tokens):
            raise InvalidInputError(
                f"the request of record {custom_id[:16]} alone ({line_size} bytes,"
                f" {line_tokens} prompt tokens) exceeds one batch's limit; shorten the record"
                " or run it online (via='online')"
            )
        full = (
            count >= max_requests
            or size + line_size > max_bytes
            or (max_tokens is not None and tokens + line_tokens > max_tokens)
        )
        if count and full:
            yield first, last, count, tokens
            count = size = tokens = 0
        if not count:
            first = custom_id
        last = custom_id
        count, size, tokens = count + 1, size + line_size, tokens + line_tokens
    if count:
        yield first, last, count, tokens


def split_lines(
    lines: Sequence[BatchLine],
    max_requests: int = MAX_BATCH_REQUESTS,
    max_bytes: int = MAX_BATCH_BYTES,
    max_tokens: int | None = None,
) -> list[list[BatchLine]]:
    """Consecutive batches of `lines`, each within the request, byte and token limits
    (`batch_spans`' rule).

    Raises:
        InvalidInputError: a single line is larger than `max_bytes` or `max_tokens`.
    """
    entries = ((line.custom_id, len(line.data), line.tokens) for line in lines)
    chunks: list[list[BatchLine]] = []
    start = 0
    for _, _, count, _ in batch_spans(entries, max_requests, max_bytes, max_tokens):
        chunks.append(list(lines[start : start + count]))
        start += count
    return chunks


def _line_tokens(chunk: Sequence[BatchLine]) -> int:
    return sum(line.tokens for line in chunk)


def plan_waves(
    chunks: Iterable[C],
    token_limit: int | None,
    tokens: Callable[[C], int] = _line_tokens,  # type: ignore[assignment]
) -> list[list[C]]:
    """Group batches into waves whose prompt tokens (`tokens` of each batch: by default
    the sum of its lines') stay within `token_limit` (None: one wave)."""
    waves: list[list[C]] = []
    current: list[C] = []
    queued = 0
    for chunk in chunks:
        cost = tokens(chunk)
        if current and token_limit is not None and queued + cost > token_limit:
            waves.append(current)
            current, queued = [], 0
        current.append(chunk)
        queued += cost
    if current:
        waves.append(current)
    return waves
