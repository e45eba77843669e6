"""Sending one request through the in-call tier (`resilience/retrying.py`): each HTTP attempt
within `attempt_timeout_s`, its failure typed with the server's words and the endpoint, the
rate-limit headers observed and the limiter's token reservation settled.

The rate limiter's probe (the one call sent alone until the first answer shows the
limits) is streamed: the limits arrive with the response's headers, at the first byte,
not after the whole answer, so the calls waiting for them start a generation time
sooner. The streamed answer is read into the same `ChatResult`; a server that refuses
streams (a 400 or 422 naming the stream) gets the same request plainly at once, and no
streamed probe again; one that answers the stream with a plain body is read plainly.

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
import re
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
    server_words,
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
from prefect_openai_chat.tokens import count_request_tokens, count_text_tokens
from prefect_openai_chat.tokens.context import completion_room
from prefect_openai_chat.tokens.counting import FORMAT_TOKENS

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
        self.probe_streams = True  # False once a server refused a streamed probe

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
            attempt = functools.partial(self._plain_or_probe, request, record)
        p = self.protection
        room = completion_room(request)

        reserved: list[int] = []  # counted once, and only if a token limit asks for it

        def tokens() -> int:
            """The reservation: the exact prompt, and the room asked for (else what answers
            without one have been writing); the API charges the room up front."""
            if not reserved:
                prompt = count_request_tokens(request, FORMAT_TOKENS)  # settled after the call
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

    def _plain_or_probe(
        self, request: dict[str, Any], record: CallRecord, number: int
    ) -> Awaitable[ChatResult]:
        """One plain HTTP attempt (a 200 that is no chat completion raises), streamed while
        it is the limiter's probe: its headers, which carry the limits, then arrive at the
        first byte."""
        limiter = self.protection.limiter
        probing = limiter is not None and limiter.probing and self.probe_streams
        if probing and request.get("n", 1) == 1:
            attempt = self._probe_attempt(request)
        else:
            attempt = self._plain_attempt(request)
        return self._within_attempt_deadline(request, record, attempt)

    async def _probe_attempt(self, request: dict[str, Any]) -> ChatResult:
        """The probe as a stream; plain at once, within the same attempt, if the server
        refuses the stream or answers it with a plain body."""
        started = self.clock()
        try:
            stream = await self._open_stream(request)
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            if not _refuses_streams(exc):
                raise  # the request's own fault, as a plain request would have met it
            self.probe_streams = False  # this server wants its requests plain
            return await self._plain_attempt(request)
        response = stream.response
        if "event-stream" in (response.headers.get("content-type") or ""):
            return await self._read_stream(stream, request, None, started)
        self.probe_streams = False  # a server that answers a stream with a plain body
        try:
            await response.aread()
        finally:
            await stream.close()
        return self._plain_result(request, response)

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
        response = await self._client().post(
            _PATH, cast_to=http_library().Response, body=body, options=cast(Any, options)
        )
        self._observe_limits(response.headers)
        return self._plain_result(request, response)

    def _plain_result(self, request: dict[str, Any], response: Any) -> ChatResult:
        """A whole answer's `ChatResult`, its usage counted here when the server sent none."""
        result = result_from_response(response, response.headers.get("x-request-id"), self.where)
        if result.usage.prompt_tokens == 0:  # no usable usage (a prompt is never 0 tokens)
            result = result.model_copy(update={"usage": _local_usage(request, result)})
        return result

    async def _stream_attempt(
        self, request: dict[str, Any], on_delta: DeltaCallback | None
    ) -> ChatResult:
        started = self.clock()
        return await self._read_stream(await self._open_stream(request), request, on_delta, started)

    async def _open_stream(
        self, request: dict[str, Any]
    ) -> openai.AsyncStream[ChatCompletionChunk]:
        """Send `request` as a stream; the limits are read from its headers at once."""
        body, options = as_posted(request)
        stream = await self._client().post(
            _PATH,
            cast_to=ChatCompletion,
            body={**body, "stream": True, "stream_options": {"include_usage": True}},
            options=cast(Any, options),
            stream=True,
            stream_cls=openai.AsyncStream[ChatCompletionChunk],
        )
        self._observe_limits(stream.response.headers)
        return stream

    async def _read_stream(
        self,
        stream: openai.AsyncStream[ChatCompletionChunk],
        request: dict[str, Any],
        on_delta: DeltaCallback | None,
        started: float,
    ) -> ChatResult:
        """Read an open stream's chunks into one `ChatResult`."""
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
        if isinstance(exc, http_library().TransportError):
            return self._broken_while_read(exc)
        return exc

    def _broken_while_read(self, exc: Exception) -> openai.APIConnectionError:
        """The SDK's connection error for a transport error raised while a stream or a body
        was read, after `post` returned (the SDK wraps only those raised inside it)."""
        try:
            request = cast(Any, exc).request
        except RuntimeError:  # an error raised without its request
            request = http_library().Request("POST", f"{self.settings.base_url or ''}{_PATH}")
        if isinstance(exc, http_library().TimeoutException):
            return openai.APITimeoutError(request=request)
        said = f"the connection to {self.where} broke while the answer was read"
        return openai.APIConnectionError(
            message=f"{said} ({type(exc).__name__}: {exc})", request=request
        )

    def _client(self) -> AsyncOpenAI:
        """The client of one attempt; its key is masked in everything kept from now on."""
        client = self.client()
        with contextlib.suppress(Exception):  # a key that cannot be read fails the call itself
            remember_secret(client.api_key)
        return client

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


_STREAM_WORD = re.compile(r"\bstream(_options)?\b", re.IGNORECASE)


def _refuses_streams(exc: openai.APIStatusError) -> bool:
    """Whether a 400/422 refuses the stream itself (`param` `stream`, or its message names
    it), not the request's content (its context, its filter, its parameters)."""
    param = getattr(exc, "param", None)
    if param in ("stream", "stream_options"):
        return True
    return bool(_STREAM_WORD.search(server_words(exc) or str(exc)))


def _local_usage(request: dict[str, Any], result: ChatResult) -> Usage:
    model = request["model"]
    completion = result.content or "".join(c.arguments for c in result.tool_calls)
    return Usage(
        prompt_tokens=count_request_tokens(request),
        completion_tokens=count_text_tokens(completion, model),
    )
