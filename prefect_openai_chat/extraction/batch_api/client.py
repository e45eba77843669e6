"""Files and batches over an `AsyncOpenAI` client: upload, create, find, poll, download.

The client is the one the `ChatModel` builds (retries off): each call here gets a few
retries of its own for connection errors and 5xx answers, as polling a batch for
hours must outlive a network blip.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import openai
from openai import AsyncOpenAI

from prefect_openai_chat.extraction.batch_api.lines import BATCH_ENDPOINT

T = TypeVar("T")
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
_RETRIES = 4


async def _retrying(action: Callable[[], Awaitable[T]]) -> T:
    for attempt in range(_RETRIES + 1):
        try:
            return await action()
        except (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError):
            if attempt == _RETRIES:
                raise
            await asyncio.sleep(min(30.0, 0.5 * 2**attempt))
    raise AssertionError("unreachable")


class BatchClient:
    """The Files and Batch API calls a batch run makes."""

    def __init__(self, client: AsyncOpenAI) -> None:
        self.client = client

    async def upload(self, data: bytes, name: str) -> str:
        """Upload a batch input file; its id."""
        file = await _retrying(lambda: self.client.files.create(file=(name, data), purpose="batch"))
        return file.id

    async def create(self, file_id: str, metadata: dict[str, str]) -> Any:
        """Create a batch over `file_id` for chat completions within 24 h."""
        return await _retrying(
            lambda: self.client.batches.create(
                input_file_id=file_id,
                endpoint=BATCH_ENDPOINT,
                completion_window="24h",
                metadata=metadata,
            )
        )

    async def find(self, metadata: dict[str, str], pages: int = 3) -> Any | None:
        """A recent batch created with exactly `metadata` that did not fail, else None."""
        after: str | None = None
        for _ in range(pages):
            kwargs: dict[str, Any] = {"limit": 100, **({"after": after} if after else {})}
            page = await _retrying(functools.partial(self.client.batches.list, **kwargs))
            for batch in page.data:
                if batch.metadata == metadata and batch.status != "failed":
                    return batch
            if not page.has_more or not page.data:
                return None
            after = page.data[-1].id
        return None

    async def retrieve(self, batch_id: str) -> Any:
        """The batch as it is now."""
        return await _retrying(lambda: self.client.batches.retrieve(batch_id))

    async def cancel(self, batch_id: str) -> Any:
        """Ask the API to cancel a batch."""
        return await _retrying(lambda: self.client.batches.cancel(batch_id))

    async def download(self, file_id: str | None) -> bytes:
        """The content of an output or error file (empty when there is none)."""
        if not file_id:
            return b""
        content = await _retrying(lambda: self.client.files.content(file_id))
        return content.content
