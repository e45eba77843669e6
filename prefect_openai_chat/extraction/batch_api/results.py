"""What a finished batch's result files say of each of its records.

`BatchNight.collect` downloads a batch's output and error files (`download`), keeps each
line by `custom_id` in the night's store (`read_results`: a malformed line or one
repeated is a note, never an error), then gives each queued work of the batch its
line, or the lack of one (`match_result`). A batch that failed validation names the
lines at fault (`failed_lines`). Nothing here raises for what a file holds.

Example:
    >>> from types import SimpleNamespace
    >>> from prefect_openai_chat.extraction.batch_api.night import Work
    >>> work = Work("a1b2", "Ticket 7")
    >>> match_result(SimpleNamespace(id="batch_1", status="expired"), work, None, [])
    >>> work.status, work.note
    ('unfinished', 'batch batch_1 expired first')
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai

from prefect_openai_chat.errors import ChatError
from prefect_openai_chat.extraction.batch_api.client import BatchClient
from prefect_openai_chat.extraction.batch_api.outputs import LineResult, merge_results, parse_line
from prefect_openai_chat.extraction.batch_api.store import NightStore, pack, unpack

if TYPE_CHECKING:
    from prefect_openai_chat.extraction.batch_api.night import Work

DOWNLOAD_TRIES = 3


async def download(
    client: BatchClient, file_id: str | None, path: Path, poll_interval_s: float
) -> None:
    """A result file to `path`, tried `DOWNLOAD_TRIES` times (each under the retry policy),
    a poll interval apart (30 s at most)."""
    for attempt in range(1, DOWNLOAD_TRIES + 1):
        try:
            await client.download_to(file_id, path)
            return
        except (openai.APIError, ChatError):
            if attempt == DOWNLOAD_TRIES:
                raise
            await asyncio.sleep(min(poll_interval_s, 30.0))


def read_results(
    store: NightStore, path: Path, where: str, notes: list[str], model: str, prices: Any
) -> None:
    """Keep each line of one result file in `store` by `custom_id`, merging a repeated one;
    what cannot be used goes to `notes`."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            custom_id, result = parse_line(raw, model, prices)
            if custom_id is None:
                notes.append(f"{where} line {number}: {result.error}; ignored")
                continue
            seen = store.result(custom_id)
            if seen is not None:
                result, said = merge_results(unpack(seen), result)
                notes.append(f"{where} line {number}: record {custom_id[:16]} again: {said}")
            store.put_result(custom_id, pack(result))


def match_result(batch: Any, work: Work, result: LineResult | None, unreadable: list[str]) -> None:
    """What one work's line (or its absence) makes of it."""
    if result is not None and result.answer is not None:
        work.answers.append(result.answer)
        work.batch_cost += result.answer.cost_usd or 0.0
        work.online_cost_of_answers += result.online_cost_usd or 0.0
        work.status = "answered"
    elif result is not None and result.conflict:
        work.status, work.note = "batch_failed", f"batch {batch.id}: {result.error}"
    elif result is None and unreadable:
        unfinished(work, f"batch {batch.id} abandoned: {'; '.join(unreadable)}")
    elif (result is not None and result.unfinished) or (
        result is None and batch.status in ("expired", "cancelled")
    ):
        unfinished(work, f"batch {batch.id} {batch.status} first")
    else:
        work.status = "failed_line"
        work.note = (
            f"batch {batch.id}: {result.error}"
            if result is not None
            else f"batch {batch.id} returned no line for this record"
        )


def unfinished(work: Work, note: str) -> None:
    """The work was not answered (its batch ended first): sent again, or quarantined."""
    work.status, work.note = "unfinished", note


def failed_lines(
    batch: Any, custom_id_at: Callable[[int], str | None]
) -> tuple[dict[str, str], str] | None:
    """A batch that failed validation: the reason of each line it names, by custom id, and
    the first reason (for the lines it does not name); None when it only waits for room in
    the queue (`token_limit_exceeded`). `custom_id_at(n)` is the custom id of line n."""
    errors = list(getattr(batch.errors, "data", None) or [])
    if any(getattr(e, "code", None) == "token_limit_exceeded" for e in errors):
        return None
    by_id: dict[str, str] = {}
    for error in errors[:1000]:
        line = getattr(error, "line", None)
        text = f"{getattr(error, 'code', None) or 'error'}: {getattr(error, 'message', '')}"
        custom_id = custom_id_at(line) if isinstance(line, int) and line >= 1 else None
        if custom_id is not None:
            by_id[custom_id] = f"line {line}: {text}"
    first = next(iter(by_id.values()), None) or (
        f"{errors[0].code}: {errors[0].message}" if errors else "no reason given"
    )
    return by_id, first
