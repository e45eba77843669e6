"""One logical chat completion: validate, fit the context, send through the resilience
tiers, fall back when the endpoint is down, and check the outcome.

`ChatRunner` is Prefect-free; the tasks build one from a `ChatModel` block. The
async `complete` is the implementation; sync callers go through `run_sync`.

Example:
    >>> import asyncio
    >>> from openai import AsyncOpenAI
    >>> from prefect_openai_chat.chat import ChatRunner, ChatSettings
    >>> from prefect_openai_chat.simulator import Simulator
    >>> async def main(sim: Simulator) -> str | None:
    ...     client = AsyncOpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)
    ...     runner = ChatRunner(ChatSettings(model="gpt-4o-mini"), lambda: client)
    ...     result = await runner.complete([{"role": "user", "content": "Hi"}])
    ...     return result.finish_reason
    >>> with Simulator() as sim:
    ...     asyncio.run(main(sim))
    'stop'
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
from openai import AsyncOpenAI

from prefect_openai_chat.chat.context import (
    completion_room,
    overflow,
    server_window,
    shorten,
)
from prefect_openai_chat.chat.messages import validate_messages, validate_model_name
from prefect_openai_chat.chat.protection import Protection
from prefect_openai_chat.chat.response import (
    StreamAccumulator,
    content_filter_error,
    result_from_raw,
    with_server_words,
)
from prefect_openai_chat.chat.settings import ChatSettings
from prefect_openai_chat.errors import (
    AttemptTimeoutError,
    CallTimeoutError,
    ContentFilteredError,
    ContextWindowExceededError,
    MalformedResponseError,
    MissingFallbackError,
    TruncatedOutputError,
    add_note,
)
from prefect_openai_chat.redaction import redact_exception, remember_secret
from prefect_openai_chat.resilience import (
    Action,
    Verdict,
    call_with_retries,
    circuit_key,
    describe_error,
    mark_for_task_tier,
)
from prefect_openai_chat.resilience.waits import Deadline
from prefect_openai_chat.results import ChatResult, Usage
from prefect_openai_chat.telemetry import note_attempt, observe_call
from prefect_openai_chat.tokens import count_message_tokens, count_text_tokens, estimate_cost
from prefect_openai_chat.tokens.context import SUMMARY_TOKENS, context_limit

ClientFactory = Callable[[], AsyncOpenAI]
DeltaCallback = Callable[[str], None]
Sleep = Callable[[float], Awaitable[None]]
FallbackLoader = Callable[[], Awaitable["ChatRunner"]]  # loads a fallback when first needed

logger = logging.getLogger("prefect_openai_chat")


@dataclass
class _Tally:
    """Everything one logical call spent: every HTTP attempt, and the summary calls' usage."""

    attempts: int = 0
    extra_usage: Usage = field(default_factory=Usage)
    extra_cost: float | None = 0.0
    last_error: str | None = None


# The tally of the logical call in progress: fallbacks and summaries add to the caller's.
_TALLY: contextvars.ContextVar[_Tally | None] = contextvars.ContextVar(
    "prefect_openai_chat_tally", default=None
)


@dataclass(frozen=True)
class _Call:
    """What one `complete` was asked for: handed to context strategies and fallbacks."""

    request: dict[str, Any]
    stream: bool
    on_delta: DeltaCallback | None
    overrides: dict[str, Any]

    def hand_over(self, runner: ChatRunner) -> Awaitable[ChatResult]:
        """The same call on another runner, which uses its own model."""
        overrides = {k: v for k, v in self.overrides.items() if k != "model"}
        return runner.complete(
            self.request["messages"], stream=self.stream, on_delta=self.on_delta, **overrides
        )


class ChatRunner:
    """Sends chat completions for one `ChatSettings`, through the resilience tiers.

    Args:
        settings: Model, generation defaults and outcome handling.
        client: Returns the `AsyncOpenAI` client to use (cached by the caller).
        protection: Retry policy, circuit guard, retry budget and limiter.
        fallbacks: Runners (or async loaders of runners, called only when needed) tried in
            order when this endpoint is down.
        static_fallback: Text returned when every fallback is down too.
    """

    def __init__(
        self,
        settings: ChatSettings,
        client: ClientFactory,
        *,
        protection: Protection | None = None,
        fallbacks: Sequence[ChatRunner | FallbackLoader] = (),
        static_fallback: str | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings
        self.protection = protection or Protection()
        self.fallbacks = list(fallbacks)
        self.static_fallback = static_fallback
        self._client = client
        self._sleep = sleep
        self._clock = clock

    @property
    def _has_fallback(self) -> bool:
        return bool(self.fallbacks) or self.static_fallback is not None

    @functools.cached_property
    def key(self) -> str:
        """The circuit key: base URL and model."""
        return circuit_key(self.settings.base_url, self.settings.model)

    async def complete(
        self,
        messages: Sequence[Any],
        *,
        stream: bool = False,
        on_delta: DeltaCallback | None = None,
        **overrides: Any,
    ) -> ChatResult:
        """Send one chat completion and return its checked result.

        A retried stream starts over: `on_delta` then sees the new attempt's text.

        Raises:
            InvalidInputError: before any HTTP call, when the input is malformed.
            ContextWindowExceededError: the prompt does not fit and the strategy is `fail`.
            TruncatedOutputError: `finish_reason == "length"`; `.partial` holds the result.
            ContentFilteredError: the content filter stopped it (unless settings flag it).
        """
        guard = self.protection.guard
        with observe_call(self.settings, messages, overrides, stream=stream, guard=guard) as call:
            return call.done(await self._complete_call(messages, stream, on_delta, overrides))

    async def _complete_call(
        self,
        messages: Sequence[Any],
        stream: bool,
        on_delta: DeltaCallback | None,
        overrides: dict[str, Any],
    ) -> ChatResult:
        outer = _TALLY.get() is None  # a fallback's call joins its caller's tally and deadline
        token = _TALLY.set(_Tally()) if outer else None
        try:
            if outer and self.settings.call_timeout_s is not None:
                return await self._within_call_deadline(messages, stream, on_delta, overrides)
            return await self._complete(messages, stream, on_delta, overrides)
        except Exception as exc:
            redact_exception(exc)
            mark_for_task_tier(exc, self.protection.policy)
            raise
        finally:
            if token is not None:
                _TALLY.reset(token)

    async def _within_call_deadline(
        self,
        messages: Sequence[Any],
        stream: bool,
        on_delta: DeltaCallback | None,
        overrides: dict[str, Any],
    ) -> ChatResult:
        window = Deadline(self.settings.call_timeout_s)
        try:
            async with window:
                return await self._complete(messages, stream, on_delta, overrides)
        except TimeoutError:
            if not window.expired:
                raise
            tally = _TALLY.get() or _Tally()
            raise CallTimeoutError(
                f"the call to {self._where} did not finish within call_timeout_s="
                f"{self.settings.call_timeout_s:g} s ({tally.attempts} HTTP attempt(s), last"
                f" error: {tally.last_error or 'none'}); raise call_timeout_s on the ChatModel"
                " or check the endpoint"
            ) from None

    async def _complete(
        self,
        messages: Sequence[Any],
        stream: bool,
        on_delta: DeltaCallback | None,
        overrides: dict[str, Any],
    ) -> ChatResult:
        request = self._request(validate_messages(messages), overrides)
        window = self.settings.context_window
        if overflow(request, window) > 0:
            if self.settings.context_strategy == "bigger_model":
                return await self._bigger_model(_Call(request, stream, on_delta, overrides))
            strategy = self.settings.context_strategy
            request = await shorten(request, strategy, window, self._summary)
        started = self._clock()
        try:
            result, attempts = await self._send(request, stream, on_delta)
        except Exception as exc:
            return await self._recover(exc, _Call(request, stream, on_delta, overrides))
        return self._finish(result, request, attempts, started)

    @functools.cached_property
    def _where(self) -> str:
        """The endpoint, for messages: `http://host/v1 (model gpt-4o-mini)`."""
        return f"{self.key.split('|', 1)[0]} (model {self.settings.model})"

    async def _recover(self, exc: Exception, call: _Call) -> ChatResult:
        """A context strategy or a fallback for an error the in-call tier gave up on."""
        verdict = self.protection.policy.classify(exc)
        if verdict.action is Action.CONTEXT:
            return await self._after_overflow(exc, call)
        if self._has_fallback and _is_outage(verdict):
            return await self._fall_back(exc, call)
        raise exc

    def request_body(self, messages: Sequence[Any], **overrides: Any) -> dict[str, Any]:
        """The JSON body `complete` sends for `messages` (before any context fitting).

        For the Batch API, whose lines must hold the very request an online call sends.

        Example:
            >>> runner = ChatRunner(ChatSettings(model="gpt-4o-mini", defaults={"seed": 1}), None)
            >>> runner.request_body([{"role": "user", "content": "Hi"}], temperature=0)
            {'seed': 1, 'temperature': 0, 'messages': [{'role': 'user', 'content': 'Hi'}], \
'model': 'gpt-4o-mini'}
        """
        sent = _as_sent(self._request(validate_messages(messages), overrides))
        return {**sent["extra_body"], "model": sent["model"]}

    # --- one logical call through the in-call tier ---

    def _request(self, messages: list[dict[str, Any]], overrides: dict[str, Any]) -> dict[str, Any]:
        request = {**self.settings.request_defaults(), **overrides}
        request["model"] = validate_model_name(request.get("model", self.settings.model))
        request["messages"] = messages
        return request

    async def _send(
        self, request: dict[str, Any], stream: bool, on_delta: DeltaCallback | None
    ) -> tuple[ChatResult, int]:
        """The in-call tier around one HTTP attempt; settles the limiter's token reservation."""
        attempt: Callable[[int], Awaitable[ChatResult]]
        if stream:
            attempt = functools.partial(self._stream_once, request, on_delta)
        else:
            attempt = functools.partial(self._complete_once, request)
        p = self.protection

        room = completion_room(request)

        @functools.cache
        def tokens() -> int:
            """The reservation: the exact prompt, and the room asked for (else what answers
            without one have been writing); the API charges the room up front."""
            prompt = count_message_tokens(
                request["messages"], request["model"], request.get("tools")
            )
            expected = p.limiter.expected_completion if p.limiter is not None else 0
            return prompt + (room or round(expected))

        result, attempts = await call_with_retries(
            attempt,
            policy=p.policy,
            key=self.key,
            guard=p.guard,
            budget=p.budget,
            limiter=p.limiter,
            gate=p.gate,
            sleep=self._sleep,
            on_retry=p.on_retry,
            reload_credentials=p.reload_credentials,
            tokens=tokens,
            clock=self._clock,
            # with somewhere else to turn, an open circuit is not waited out
            outage_patience_s=0.0 if self._has_fallback else None,
        )
        if p.limiter is not None and p.limiter.limits_tokens and not room:
            # Without a room asked for, the API charges what was written, after the answer.
            usage = result.usage
            p.limiter.settle(tokens(), usage.total_tokens, written=usage.completion_tokens)
        return result, attempts

    def _complete_once(self, request: dict[str, Any], number: int) -> Awaitable[ChatResult]:
        """One HTTP attempt; a 200 that is no chat completion raises."""
        return self._within_attempt_deadline(request, self._plain_attempt(request))

    def _stream_once(
        self, request: dict[str, Any], on_delta: DeltaCallback | None, number: int
    ) -> Awaitable[ChatResult]:
        """One streamed HTTP attempt, every chunk within the attempt deadline."""
        return self._within_attempt_deadline(request, self._stream_attempt(request, on_delta))

    async def _within_attempt_deadline(
        self, request: dict[str, Any], attempt: Coroutine[Any, Any, ChatResult]
    ) -> ChatResult:
        """Run one attempt under `attempt_timeout_s`; raise a typed error naming the endpoint."""
        window = self._start_attempt()
        try:
            async with window:
                return await attempt
        except Exception as exc:
            error = self._attempt_error(exc, window)
            if isinstance(error, ContentFilteredError) and self.settings.content_filter == "flag":
                return self._filtered_prompt(request, exc)
            self._note_error(error)
            if error is exc:
                raise
            raise error from (None if isinstance(error, AttemptTimeoutError) else exc)

    async def _plain_attempt(self, request: dict[str, Any]) -> ChatResult:
        raw = await self._client().chat.completions.with_raw_response.create(**_as_sent(request))
        self._observe_limits(raw.headers)
        result = result_from_raw(raw, raw.headers.get("x-request-id"), self._where)
        if result.usage.prompt_tokens == 0:  # no usable usage (a prompt is never 0 tokens)
            result = result.model_copy(update={"usage": _local_usage(request, result)})
        return result

    async def _stream_attempt(
        self, request: dict[str, Any], on_delta: DeltaCallback | None
    ) -> ChatResult:
        started = self._clock()
        raw = await self._client().chat.completions.with_raw_response.create(
            **_as_sent(request), stream=True, stream_options={"include_usage": True}
        )
        self._observe_limits(raw.headers)
        request_id = raw.headers.get("x-request-id")
        accumulator = StreamAccumulator()
        first_token: float | None = None
        stream = raw.parse()
        try:
            async for chunk in stream:
                text = accumulator.add(chunk)
                if text is not None:
                    if first_token is None:
                        first_token = self._clock() - started
                    if on_delta is not None:
                        on_delta(text)
        except ValueError as exc:  # a `data:` line that is not JSON, or not a chunk
            raise MalformedResponseError(
                f"{self._where} sent a stream chunk that is not a completion chunk ({exc!s:.200})"
                f" after {accumulator.chunks} chunks (request {request_id or 'n/a'});"
                " retried as an outage"
            ) from exc
        finally:
            await stream.close()
        result = accumulator.result(request_id, self._where)
        if accumulator.usage is None:  # a server that ignores include_usage: count it here
            result = result.model_copy(update={"usage": _local_usage(request, result)})
        return result.model_copy(update={"time_to_first_token_s": first_token})

    def _start_attempt(self) -> Deadline:
        """Count the attempt in the call's tally; remember the key to redact; the deadline."""
        tally = _TALLY.get()
        if tally is not None:
            tally.attempts += 1
        note_attempt()
        with contextlib.suppress(Exception):  # a failing client fails the attempt itself
            remember_secret(self._client().api_key)
        return Deadline(self.settings.attempt_timeout_s)

    def _attempt_error(self, exc: Exception, window: Deadline) -> Exception:
        """The error an attempt raises: typed, with the server's own words and the endpoint."""
        if isinstance(exc, TimeoutError) and window.expired:
            return AttemptTimeoutError(
                f"one attempt to {self._where} took longer than attempt_timeout_s="
                f"{self.settings.attempt_timeout_s:g} s (the server kept the connection busy"
                " without finishing); retried as a timeout"
            )
        if isinstance(exc, openai.APIStatusError):
            with_server_words(exc)
            return content_filter_error(exc, self._where) or exc
        return exc

    def _note_error(self, error: BaseException) -> None:
        tally = _TALLY.get()
        if tally is not None:
            tally.last_error = describe_error(error)

    def _filtered_prompt(self, request: dict[str, Any], exc: Exception) -> ChatResult:
        """A filtered prompt under content_filter='flag': a result `_check_finish` flags."""
        return ChatResult(
            finish_reason="content_filter",
            model=request["model"],
            request_id=getattr(exc, "request_id", None),
        )

    def _observe_limits(self, headers: Any) -> None:
        if self.protection.limiter is not None:
            self.protection.limiter.observe(headers)

    # --- when the call cannot be sent as it is ---

    async def _summary(self, messages: list[dict[str, Any]]) -> str:
        """The summary call of `summarize`: its attempts, usage and cost join the call's."""
        request = {
            "model": self.settings.model,
            "messages": messages,
            "max_completion_tokens": SUMMARY_TOKENS,
        }
        result, _ = await self._send(request, False, None)
        tally = _TALLY.get()
        if tally is not None:
            tally.extra_usage = tally.extra_usage + result.usage
            cost = self._cost(result, request)
            tally.extra_cost = (
                None if cost is None or tally.extra_cost is None else (tally.extra_cost + cost)
            )
        return result.content or ""

    async def _after_overflow(self, exc: Exception, call: _Call) -> ChatResult:
        """The server said the context overflowed although the count said it fits."""
        strategy, request = self.settings.context_strategy, call.request
        if strategy == "bigger_model":
            return await self._bigger_model(call)
        window = server_window(exc)  # the server's real window, when its message names it
        if strategy == "fail":
            needed = count_message_tokens(
                request["messages"], request["model"], request.get("tools")
            )
            raise ContextWindowExceededError.for_prompt(
                request["model"],
                needed,
                completion_room(request),
                window,
                "shorten the input, or set context_window and context_strategy on the ChatModel",
                counted_by="the server",
            ) from exc
        if window is not None:
            shorter = await shorten(request, strategy, window, self._summary)
        else:  # the configured window is too large by an unknown amount: aim 10% lower
            shorter = await shorten(
                request, strategy, self.settings.context_window, self._summary, 0.9
            )
        started = self._clock()
        result, attempts = await self._send(shorter, call.stream, call.on_delta)
        return self._finish(result, shorter, attempts + 1, started)

    async def _bigger_model(self, call: _Call) -> ChatResult:
        request = call.request
        needed = count_message_tokens(request["messages"], request["model"], request.get("tools"))
        for fallback in self.fallbacks:
            runner = await _load(fallback)
            window = context_limit(runner.settings.model, runner.settings.context_window)
            if needed + completion_room(request) <= window:
                return await call.hand_over(runner)
        raise ContextWindowExceededError.for_prompt(
            request["model"],
            needed,
            completion_room(request),
            context_limit(request["model"], self.settings.context_window),
            "it fits neither this model nor any fallback model; add a fallback with a larger"
            " context window or shorten the input",
        )

    async def _fall_back(self, exc: Exception, call: _Call) -> ChatResult:
        """Try each fallback in order (loading it now); a missing one is named, never hidden."""
        missing: list[MissingFallbackError] = []
        for fallback in self.fallbacks:
            try:
                runner = await _load(fallback)
            except MissingFallbackError as load_exc:
                missing.append(load_exc)
                logger.warning("%s", load_exc)
                continue
            try:
                return await call.hand_over(runner)
            except Exception as fallback_exc:
                add_note(
                    exc, f"fallback {runner.settings.name!r} failed too: {fallback_exc!r:.200}"
                )
        if self.static_fallback is not None:
            tally = _TALLY.get()
            return ChatResult(
                content=self.static_fallback,
                finish_reason="stop",
                model="static",
                answered_by="static",
                http_attempts=tally.attempts if tally is not None else 0,
            )
        if missing:
            raise MissingFallbackError(
                f"{self._where} failed ({describe_error(exc)}) and no fallback could answer: "
                + "; ".join(str(m) for m in missing)
            ) from exc
        raise exc

    # --- the outcome ---

    def _cost(self, result: ChatResult, request: dict[str, Any]) -> float | None:
        usage = result.usage
        return estimate_cost(
            result.model or request["model"],
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens,
            prices=self.settings.prices,
        )

    def _finish(
        self, result: ChatResult, request: dict[str, Any], attempts: int, started: float
    ) -> ChatResult:
        """Cost, attempts and latency of the whole logical call (summary calls included)."""
        usage, cost = result.usage, self._cost(result, request)
        tally = _TALLY.get()
        if tally is not None:
            attempts = tally.attempts or attempts
            if tally.extra_usage != Usage():
                usage = usage + tally.extra_usage
                extra = tally.extra_cost
                cost = None if cost is None or extra is None else cost + extra
        result = result.model_copy(
            update={
                "usage": usage,
                "cost_usd": cost,
                "http_attempts": attempts,
                "latency_s": self._clock() - started,
                "answered_by": self.settings.name,
            }
        )
        return self._check_finish(result)

    def _check_finish(self, result: ChatResult) -> ChatResult:
        if result.finish_reason == "length":
            raise TruncatedOutputError(
                f"the answer was cut at the token limit after {result.usage.completion_tokens}"
                f" completion tokens (request {result.request_id}); raise max_completion_tokens"
                " or shorten the prompt",
                partial=result,
            )
        if result.finish_reason == "content_filter":
            if self.settings.content_filter == "flag":
                return result.model_copy(
                    update={"content": self.settings.safe_message, "flagged": True}
                )
            raise ContentFilteredError(
                f"the provider's content filter stopped the answer (request {result.request_id})",
                partial=result,
            )
        return result


async def _load(fallback: ChatRunner | FallbackLoader) -> ChatRunner:
    """The fallback's runner, loading it on first use."""
    return fallback if isinstance(fallback, ChatRunner) else await fallback()


def _as_sent(request: dict[str, Any]) -> dict[str, Any]:
    """The request for `create(...)`, its body handed to the SDK as plain JSON in `extra_body`.

    The SDK walks every parameter against its type hints before sending: about 3 ms of
    CPU per call for an extraction request (messages, a JSON schema), more than all the
    rest of the call. The plugin has checked the messages already (`validate_messages`),
    and the body is plain JSON: `extra_body`, which the SDK merges over the typed
    parameters unchanged, sends it byte for byte as it is. Only `model` stays typed.
    """
    body = {name: value for name, value in request.items() if name not in _SDK_OPTIONS}
    body.pop("model", None)
    body.update(request.get("extra_body") or {})
    options = {name: request[name] for name in _SDK_OPTIONS if name in request}
    return {**options, "model": request["model"], "messages": [], "extra_body": body}


# Options of the SDK's `create`, not fields of the JSON body.
_SDK_OPTIONS = ("extra_headers", "extra_query", "extra_body", "timeout")


def _is_outage(verdict: Verdict) -> bool:
    """Errors a fallback can help with: the endpoint is down or its retries ran out."""
    return verdict.action is Action.RETRY or verdict.reason == "circuit_open"


def _local_usage(request: dict[str, Any], result: ChatResult) -> Usage:
    model = request["model"]
    completion = result.content or "".join(c.arguments for c in result.tool_calls)
    return Usage(
        prompt_tokens=count_message_tokens(request["messages"], model, request.get("tools")),
        completion_tokens=count_text_tokens(completion, model),
    )
