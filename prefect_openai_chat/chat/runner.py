"""One logical chat completion: validate, send (with the resilience tiers), check the outcome.

`ChatRunner` is Prefect-free; the tasks build one from a `ChatModel` block. The
async `complete` is the implementation; sync callers go through `run_sync`.

Example:
    >>> import asyncio
    >>> from openai import AsyncOpenAI
    >>> from prefect_openai_chat.chat import ChatRunner, ChatSettings
    >>> from prefect_openai_chat.simulator import Simulator
    >>> with Simulator() as sim:
    ...     client = AsyncOpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)
    ...     runner = ChatRunner(ChatSettings(model="gpt-4o-mini"), lambda: client)
    ...     result = asyncio.run(runner.complete([{"role": "user", "content": "Hi"}]))
    >>> result.finish_reason
    'stop'
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from openai import AsyncOpenAI

from prefect_openai_chat.chat.messages import validate_messages, validate_model_name
from prefect_openai_chat.chat.response import StreamAccumulator, result_from_completion
from prefect_openai_chat.chat.settings import ChatSettings
from prefect_openai_chat.errors import ContentFilteredError, TruncatedOutputError
from prefect_openai_chat.results import ChatResult, Usage
from prefect_openai_chat.tokens import count_message_tokens, count_text_tokens, estimate_cost

ClientFactory = Callable[[], AsyncOpenAI]
DeltaCallback = Callable[[str], None]
Sleep = Callable[[float], Awaitable[None]]


class ChatRunner:
    """Sends chat completions for one `ChatSettings`, through the resilience tiers."""

    def __init__(
        self,
        settings: ChatSettings,
        client: ClientFactory,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings
        self._client = client
        self._sleep = sleep
        self._clock = clock

    async def complete(
        self,
        messages: Sequence[Any],
        *,
        stream: bool = False,
        on_delta: DeltaCallback | None = None,
        **overrides: Any,
    ) -> ChatResult:
        """Send one chat completion and return its checked result.

        Raises:
            InvalidInputError: before any HTTP call, when the input is malformed.
            TruncatedOutputError: `finish_reason == "length"`; `.partial` holds the result.
            ContentFilteredError: the content filter stopped it (unless settings flag it).
        """
        checked = validate_messages(messages)
        request = self._request(checked, overrides)
        started = self._clock()
        result, attempts = await self._send(request, stream, on_delta)
        result = self._account(result, request, attempts, started)
        return self._check_finish(result)

    def _request(self, messages: list[dict[str, Any]], overrides: dict[str, Any]) -> dict[str, Any]:
        request = {**self.settings.request_defaults(), **overrides}
        request["model"] = validate_model_name(request.get("model", self.settings.model))
        request["messages"] = messages
        return request

    async def _send(
        self, request: dict[str, Any], stream: bool, on_delta: DeltaCallback | None
    ) -> tuple[ChatResult, int]:
        async def attempt(number: int) -> ChatResult:
            if stream:
                return await self._stream_once(request, on_delta)
            return await self._complete_once(request)

        return await attempt(1), 1

    async def _complete_once(self, request: dict[str, Any]) -> ChatResult:
        raw = await self._client().chat.completions.with_raw_response.create(**request)
        return result_from_completion(raw.parse(), raw.headers.get("x-request-id"))

    async def _stream_once(self, request: dict[str, Any], on_delta: DeltaCallback | None) -> ChatResult:
        started = self._clock()
        raw = await self._client().chat.completions.with_raw_response.create(
            **request, stream=True, stream_options={"include_usage": True}
        )
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
        finally:
            await stream.close()
        result = accumulator.result(request_id)
        if accumulator.usage is None:  # a server that ignores include_usage: count it ourselves
            result = result.model_copy(update={"usage": self._local_usage(request, result)})
        return result.model_copy(update={"time_to_first_token_s": first_token})

    def _local_usage(self, request: dict[str, Any], result: ChatResult) -> Usage:
        model = request["model"]
        completion = result.content or "".join(c.arguments for c in result.tool_calls)
        return Usage(
            prompt_tokens=count_message_tokens(request["messages"], model, request.get("tools")),
            completion_tokens=count_text_tokens(completion, model),
        )

    def _account(
        self, result: ChatResult, request: dict[str, Any], attempts: int, started: float
    ) -> ChatResult:
        usage = result.usage
        cost = estimate_cost(
            result.model or request["model"],
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens,
            prices=self.settings.prices,
        )
        return result.model_copy(
            update={
                "cost_usd": cost,
                "attempts": attempts,
                "latency_s": self._clock() - started,
                "answered_by": self.settings.name,
            }
        )

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
