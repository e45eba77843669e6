"""Sending one request through the in-call tier (`resilience/retrying.py`): each HTTP attempt
within `attempt_timeout_s`, its failure typed with the server's words and the endpoint, the
rate-limit headers observed and the limiter's token reservation settled.

The sender neither fits the context nor falls back nor checks the finish reason: it
sends the request it is given and counts each attempt, and each 429 answer the retry loop
classifies, in the call's `CallRecord`.

Example:
    >>> import asyncio
    >>> from openai import AsyncOpenAI
    >>> from prefect_openai_chat.chat.record import CallRecord
    >>> from prefect_openai_chat.chat.settings import ChatSettings
    >>> from prefect_openai_chat.simulator import Simulator
    >>> async def main(sim: Simulator) -> tuple[str | None, int]:
    ...     client = AsyncOpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)
    ...     sender = Sender(ChatSettings(model="gpt-4o-mini"), lambda: client)
    ...     record = CallRecord()
    ...     request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
    ...     result = await sender.send(request, record)
    ...     return result.finish_reason, record.attempts
    >>> with Simulator() as sim:
    ...     asyncio.run(main(sim))
    ('stop', 1)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from prefect_openai_chat.chat.http_library import http_library
from prefect_openai_chat.chat.protection import Protection
from prefect_openai_chat.chat.record import CallRecord
from prefect_openai_chat.chat.request import DeltaCallback, as_posted
from prefect_openai_chat.chat.response import (
    StreamAccumulator,
    content_filter_error,
    result_from_response,
    with_server_words,
)
from prefect_openai_chat.chat.settings import ChatSettings
from prefect_openai_chat.errors import (
    AttemptTimeoutError,
    ContentFilteredError,
    MalformedResponseError,
)
from prefect_openai_chat.redaction import remember_secret
from prefect_openai_chat.resilience import call_with_retries, circuit_key
from prefect_openai_chat.resilience.waits import Deadline
from prefect_openai_chat.results import ChatResult, Usage
from prefect_openai_chat.telemetry import note_attempt
from prefect_openai_chat.tokens import count_message_tokens, count_text_tokens
from prefect_openai_chat.tokens.context import completion_room

ClientFactory = Callable[[], AsyncOpenAI]
_PATH = "/chat/completions"
Sleep = Callable[[float], Awaitable[None]]


class Sender:
    """Sends requests for one `ChatSettings` through the in-call tier.

    Args:
        settings: The model, the endpoint, the attempt deadline, the content filter mode.
        client: Returns the `AsyncOpenAI` client to use (cached by the caller).
        protection: Retry policy, circuit guard, retry budget, limiter and gate.
        sleep: The sleep between attempts (a recording one in tests).
        clock: The monotonic clock of latencies and the rate-limit patience.
    """

    def __init__(
        self,
        settings: ChatSettings,
        client: ClientFactory,
        protection: Protection | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings
        self.protection = protection or Protection()
        self.client = client
        self.sleep = sleep
        self.clock = clock

    @functools.cached_property
    def key(self) -> str:
        """The circuit key: base URL and model."""
        return circuit_key(self.settings.base_url, self.settings.model)

    @functools.cached_property
    def where(self) -> str:
        """The endpoint, for messages: `http://host/v1 (model gpt-4o-mini)`."""
        return f"{self.key.split('|', 1)[0]} (model {self.settings.model})"

    async def send(
        self,
        request: dict[str, Any],
        record: CallRecord,
        *,
        stream: bool = False,
        on_delta: DeltaCallback | None = None,
        outage_patience_s: float | None = None,
    ) -> ChatResult:
        """The in-call tier around HTTP attempts of `request`; the raw, unchecked result.

        Args:
            request: The checked, fitted request.
            record: Counts each attempt and keeps the last error.
            stream: Stream the answer; `on_delta` sees each piece of text (a retried
                stream starts over).
            outage_patience_s: Overrides the policy's (0: an open circuit fails at once).
        """
        attempt: Callable[[int], Awaitable[ChatResult]]
        if stream:
            attempt = functools.partial(self._stream_once, request, record, on_delta)
        else:
            attempt = functools.partial(self._plain_once, request, record)
        p = self.protection
        room = completion_room(request)

        reserved: list[int] = []  # counted once, and only if a token limit asks for it

        def tokens() -> int:
            """The reservation: the exact prompt, and the room asked for (else what answers
            without one have been writing); the API charges the room up front."""
            if not reserved:
                prompt = count_message_tokens(
                    request["messages"], request["model"], request.get("tools")
                )
                expected = p.limiter.expected_completion if p.limiter is not None else 0
                reserved.append(prompt + (room or round(expected)))
            return reserved[0]

        result, _ = await call_with_retries(  # the record counts the attempts
            attempt,
            policy=p.policy,
            key=self.key,
            guard=p.guard,
            budget=p.budget,
            limiter=p.limiter,
            gate=p.gate,
            sleep=self.sleep,
            on_retry=p.on_retry,
            reload_credentials=p.reload_credentials,
            tokens=tokens,
            clock=self.clock,
            outage_patience_s=outage_patience_s,
            on_429=record.answered_429,
        )
        if p.limiter is not None and p.limiter.limits_tokens and not room:
            # Without a room asked for, the API charges what was written, after the answer.
            usage = result.usage
            p.limiter.settle(tokens(), usage.total_tokens, written=usage.completion_tokens)
        return result

    def _plain_once(
        self, request: dict[str, Any], record: CallRecord, number: int
    ) -> Awaitable[ChatResult]:
        """One HTTP attempt; a 200 that is no chat completion raises."""
        return self._within_attempt_deadline(request, record, self._plain_attempt(request))

    def _stream_once(
        self,
        request: dict[str, Any],
        record: CallRecord,
        on_delta: DeltaCallback | None,
        number: int,
    ) -> Awaitable[ChatResult]:
        """One streamed HTTP attempt, every chunk within the attempt deadline."""
        attempt = self._stream_attempt(request, on_delta)
        return self._within_attempt_deadline(request, record, attempt)

    async def _within_attempt_deadline(
        self,
        request: dict[str, Any],
        record: CallRecord,
        attempt: Coroutine[Any, Any, ChatResult],
    ) -> ChatResult:
        """Run one attempt under `attempt_timeout_s`; raise a typed error naming the endpoint."""
        record.attempt_started()
        note_attempt()
        with contextlib.suppress(Exception):  # a failing client fails the attempt itself
            remember_secret(self.client().api_key)
        window = Deadline(self.settings.attempt_timeout_s)
        try:
            async with window:
                return await attempt
        except Exception as exc:
            error = self._attempt_error(exc, window)
            if isinstance(error, ContentFilteredError) and self.settings.content_filter == "flag":
                return _filtered_prompt(request, exc)
            record.attempt_failed(error)
            if error is exc:
                raise
            raise error from (None if isinstance(error, AttemptTimeoutError) else exc)

    async def _plain_attempt(self, request: dict[str, Any]) -> ChatResult:
        body, options = as_posted(request)
        response = await self.client().post(
            _PATH, cast_to=http_library().Response, body=body, options=cast(Any, options)
        )
        self._observe_limits(response.headers)
        result = result_from_response(response, response.headers.get("x-request-id"), self.where)
        if result.usage.prompt_tokens == 0:  # no usable usage (a prompt is never 0 tokens)
            result = result.model_copy(update={"usage": _local_usage(request, result)})
        return result

    async def _stream_attempt(
        self, request: dict[str, Any], on_delta: DeltaCallback | None
    ) -> ChatResult:
        started = self.clock()
        body, options = as_posted(request)
        stream = await self.client().post(
            _PATH,
            cast_to=ChatCompletion,
            body={**body, "stream": True, "stream_options": {"include_usage": True}},
            options=cast(Any, options),
            stream=True,
            stream_cls=openai.AsyncStream[ChatCompletionChunk],
        )
        self._observe_limits(stream.response.headers)
        request_id = stream.response.headers.get("x-request-id")
        accumulator = StreamAccumulator()
        first_token: float | None = None
        try:
            async for chunk in stream:
                text = accumulator.add(chunk)
                if text is not None:
                    if first_token is None:
                        first_token = self.clock() - started
                    if on_delta is not None:
                        on_delta(text)
        except ValueError as exc:  # a `data:` line that is not JSON, or not a chunk
            raise MalformedResponseError(
                f"{self.where} sent a stream chunk that is not a completion chunk ({exc!s:.200})"
                f" after {accumulator.chunks} chunks (request {request_id or 'n/a'});"
                " retried as an outage"
            ) from exc
        finally:
            await stream.close()
        result = accumulator.result(request_id, self.where)
        if accumulator.usage is None:  # a server that ignores include_usage: count it here
            result = result.model_copy(update={"usage": _local_usage(request, result)})
        return result.model_copy(update={"time_to_first_token_s": first_token})

    def _attempt_error(self, exc: Exception, window: Deadline) -> Exception:
        """The error an attempt raises: typed, with the server's own words and the endpoint."""
        if isinstance(exc, TimeoutError) and window.expired:
            return AttemptTimeoutError(
                f"one attempt to {self.where} took longer than attempt_timeout_s="
                f"{self.settings.attempt_timeout_s:g} s (the server kept the connection busy"
                " without finishing); retried as a timeout"
            )
        if isinstance(exc, openai.APIStatusError):
            with_server_words(exc)
            return content_filter_error(exc, self.where) or exc
        return exc

    def _observe_limits(self, headers: Any) -> None:
        if self.protection.limiter is not None:
            self.protection.limiter.observe(headers)


def _filtered_prompt(request: dict[str, Any], exc: Exception) -> ChatResult:
    """A filtered prompt under content_filter='flag': a result the outcome check flags."""
    return ChatResult(
        finish_reason="content_filter",
        model=request["model"],
        request_id=getattr(exc, "request_id", None),
    )


def _local_usage(request: dict[str, Any], result: ChatResult) -> Usage:
    model = request["model"]
    completion = result.content or "".join(c.arguments for c in result.tool_calls)
    return Usage(
        prompt_tokens=count_message_tokens(request["messages"], model, request.get("tools")),
        completion_tokens=count_text_tokens(completion, model),
    )
