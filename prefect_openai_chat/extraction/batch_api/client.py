"""Files and batches over an `AsyncOpenAI` client: upload, create, find, poll, download,
delete.

The client is the one the `ChatModel` builds (retries off): each call here goes through
the in-call tier (`resilience.retrying.call_with_retries`) with the model's retry
policy, its circuit guard and retry budget (`RUNNERS.batch_client(model)` in
blocks/assembly.py makes them, on the circuit key `<endpoint>|batch API`), so the Batch
API path retries what the error table (and the model's `error_overrides`) says
(connection errors, timeouts, 5xx, 408, 409), waits what the server's Retry-After says
(a 429 is paced within `rate_limit_patience_s`), stops retrying when the budget is spent,
waits out an open circuit within the outage patience, and fails at once on what cannot
succeed (400, 401, 404). The chat limiter is not used: the Files and Batch API calls are
not chat completions and have limits of their own. Every error leaving this module is
redacted: a server may echo the key.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import openai
from openai import AsyncOpenAI

from prefect_openai_chat.extraction.batch_api.lines import BATCH_ENDPOINT
from prefect_openai_chat.redaction import redact_exception
from prefect_openai_chat.resilience.budget import RetryBudget
from prefect_openai_chat.resilience.circuit import CircuitGuard
from prefect_openai_chat.resilience.policy import RetryPolicy
from prefect_openai_chat.resilience.retrying import call_with_retries

T = TypeVar("T")
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


class BatchClient:
    """The Files and Batch API calls a batch run makes.

    Args:
        client: The model's async client (SDK retries off).
        policy: The retry policy (the model's, with its `error_overrides`).
        key: The circuit key, shown in messages.
        guard: The circuit guard of `key`, if any.
        budget: The retry budget of `key`, if any.
    """

    def __init__(
        self,
        client: AsyncOpenAI,
        policy: RetryPolicy | None = None,
        key: str = "batch API",
        *,
        guard: CircuitGuard | None = None,
        budget: RetryBudget | None = None,
    ) -> None:
        self.client, self.policy, self.key = client, policy or RetryPolicy(), key
        self.guard, self.budget = guard, budget

    async def _call(self, action: Callable[[], Awaitable[T]]) -> T:
        """`action` under the retry policy, circuit and budget; a failure leaves redacted."""
        try:
            result, _ = await call_with_retries(
                lambda attempt: action(),
                policy=self.policy,
                key=self.key,
                guard=self.guard,
                budget=self.budget,
            )
        except Exception as exc:
            redact_exception(exc)
            raise
        return result

    async def upload(self, data: bytes, name: str) -> str:
        """Upload a batch input file; its id."""
        file = await self._call(
            lambda: self.client.files.create(file=(name, data), purpose="batch")
        )
        return file.id

    async def upload_file(self, path: Path, name: str) -> str:
        """Upload the batch input file at `path`, streamed from disk; its id."""

        async def send() -> Any:
            with path.open("rb") as handle:  # opened again by each attempt
                return await self.client.files.create(file=(name, handle), purpose="batch")

        file = await self._call(send)
        return str(file.id)

    async def create(self, file_id: str, metadata: dict[str, str]) -> Any:
        """Create a batch over `file_id` for chat completions within 24 h."""
        return await self._call(
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
            page = await self._call(functools.partial(self.client.batches.list, **kwargs))
            for batch in page.data:
                if batch.metadata == metadata and batch.status != "failed":
                    return batch
            if not page.has_more or not page.data:
                return None
            after = page.data[-1].id
        return None

    async def retrieve(self, batch_id: str) -> Any:
        """The batch as it is now."""
        return await self._call(lambda: self.client.batches.retrieve(batch_id))

    async def cancel(self, batch_id: str) -> Any:
        """Ask the API to cancel a batch."""
        return await self._call(lambda: self.client.batches.cancel(batch_id))

    async def delete(self, file_id: str) -> bool:
        """Delete a file from the account's storage; False when it was already gone (404)."""
        try:
            await self._call(lambda: self.client.files.delete(file_id))
        except openai.NotFoundError:
            return False
        return True

    async def download(self, file_id: str | None) -> bytes:
        """The content of an output or error file (empty when there is none)."""
        if not file_id:
            return b""
        content = await self._call(lambda: self.client.files.content(file_id))
        data: bytes = content.content
        return data

    async def download_to(self, file_id: str | None, path: Path) -> None:
        """Write the content of an output or error file to `path`, streamed (empty when
        there is none)."""

        async def fetch() -> None:
            with path.open("wb") as handle:  # each attempt starts the file again
                if not file_id:
                    return
                files = self.client.files.with_streaming_response
                async with files.content(file_id) as response:
                    async for chunk in response.iter_bytes(1 << 16):
                        handle.write(chunk)

        await self._call(fetch)
