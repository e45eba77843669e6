"""One record's extraction replayed over the answers its batches gave, then sent on.

`run_extraction` decides every request of a record from the answers before it, so
replaying the same answers gives the same requests: the first request of a record
is what it asks with no answer yet, and after a batch's answer the extraction either
ends (valid, refused, ...) or names its next request (a re-ask, more room). That
request is sent online (`then`), or captured for the next batch (`then=None`). The
parse, repair, validation and re-ask code is the online path's, unchanged.

Example:
    >>> import asyncio
    >>> from pydantic import BaseModel
    >>> class City(BaseModel):
    ...     name: str
    >>> step = asyncio.run(replay_extraction(City, "I live in Oslo.", [], None, model="gpt-4o"))
    >>> [m["role"] for m in step.messages]
    ['system', 'user']
    >>> answer = ChatResult(content='{"name": "Oslo"}', finish_reason="stop")
    >>> done = replay_extraction(City, "I live in Oslo.", [answer], None, model="gpt-4o")
    >>> asyncio.run(done).value
    City(name='Oslo')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from prefect_openai_chat.extraction.engine import CallFn, run_extraction
from prefect_openai_chat.results import ChatResult, Extraction


@dataclass(frozen=True)
class NextRequest:
    """The request a record needs next: messages and request parameters."""

    messages: list[dict[str, Any]]
    params: dict[str, Any]


class _Captured(BaseException):
    """Stops the extraction at the request it would send next (not an `Exception`, so
    `on_error="return"` does not turn it into an outcome)."""

    def __init__(self, request: NextRequest) -> None:
        super().__init__("captured")
        self.request = request


async def replay_extraction(
    schema: type[BaseModel],
    text: str,
    answers: Sequence[ChatResult],
    then: CallFn | None,
    **options: Any,
) -> Extraction[Any] | NextRequest:
    """Replay `answers` through `run_extraction`; past them, call `then` or capture.

    Args:
        schema: The pydantic model to extract.
        text: The record's text.
        answers: The answers the batches gave this record so far, in order.
        then: The online call for what comes after them; None returns the next request.
        **options: `run_extraction`'s keyword arguments (`model`, `instructions`, ...).

    Returns:
        The finished `Extraction`, or the `NextRequest` it needs (only with `then=None`).
    """
    replayed = iter(answers)

    async def call(messages: list[dict[str, Any]], params: dict[str, Any]) -> ChatResult:
        answer = next(replayed, None)
        if answer is not None:
            return answer
        if then is None:
            raise _Captured(NextRequest(messages, dict(params)))
        return await then(messages, params)

    try:
        return await run_extraction(call, schema, text, on_error="return", **options)
    except _Captured as captured:
        return captured.request
