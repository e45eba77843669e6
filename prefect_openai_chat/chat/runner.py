"""One logical chat completion, from separate pieces: the request (`chat/request.py`), the
context fitter (`tokens/context.py`), the sender (`chat/sender.py`, through the in-call
tier), the fallback chain (`chat/fallbacks.py`), the outcome check (`chat/outcome.py`) and
the call's record (`chat/record.py`). `ChatRunner` only puts them in order.

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
import time
from collections.abc import Callable, Sequence
from typing import Any

from prefect_openai_chat.chat.fallbacks import Fallback, FallbackChain, FallbackLoader
from prefect_openai_chat.chat.outcome import check_outcome
from prefect_openai_chat.chat.protection import Protection
from prefect_openai_chat.chat.record import CallRecord, cost_of
from prefect_openai_chat.chat.request import (
    Call,
    DeltaCallback,
    build_request,
    request_body,
    summary_request,
)
from prefect_openai_chat.chat.sender import ClientFactory, Sender, Sleep
from prefect_openai_chat.chat.settings import ChatSettings
from prefect_openai_chat.errors import CallTimeoutError, CircuitOpenError
from prefect_openai_chat.redaction import redact_exception
from prefect_openai_chat.resilience import Action, Verdict, mark_for_task_tier
from prefect_openai_chat.resilience.waits import Deadline
from prefect_openai_chat.results import ChatResult
from prefect_openai_chat.telemetry import observe_call
from prefect_openai_chat.tokens.context import SUMMARY_TOKENS, ContextFitter, Summarize

__all__ = ["ChatRunner", "ClientFactory", "DeltaCallback", "FallbackLoader", "Sleep"]


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
        fallbacks: Sequence[Fallback | FallbackLoader] = (),
        static_fallback: str | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings
        self.fitter = ContextFitter(settings.context_strategy, settings.context_window)
        self.fallbacks = FallbackChain(fallbacks, static_fallback)
        self.sender = Sender(settings, client, protection, sleep, clock)
        self._clock = clock

    @property
    def protection(self) -> Protection:
        """What guards the calls (the sender's): policy, circuit, budget, limiter, gate."""
        return self.sender.protection

    @protection.setter
    def protection(self, protection: Protection) -> None:
        self.sender.protection = protection

    @property
    def key(self) -> str:
        """The circuit key: base URL and model."""
        return self.sender.key

    def request_body(self, messages: Sequence[Any], **overrides: Any) -> dict[str, Any]:
        """The JSON body `complete` sends for `messages` (before any context fitting).

        For the Batch API, whose lines must hold the very request an online call sends.

        Example:
            >>> runner = ChatRunner(ChatSettings(model="gpt-4o-mini", defaults={"seed": 1}), None)
            >>> runner.request_body([{"role": "user", "content": "Hi"}], temperature=0)
            {'seed': 1, 'temperature': 0, 'model': 'gpt-4o-mini', 'messages': [{'role': 'user', \
'content': 'Hi'}]}
        """
        return request_body(self.settings, messages, overrides)

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
        return await self.run(Call(messages, stream, on_delta, overrides), CallRecord())

    async def run(self, call: Call, record: CallRecord) -> ChatResult:
        """`complete` for a call whose record the caller holds (a fallback chain's part).

        Observed as one call, within this runner's `call_timeout_s`; an error leaving it
        is redacted and marked for the task tier.
        """
        guard = self.protection.guard
        with observe_call(
            self.settings, call.messages, call.overrides, stream=call.stream, guard=guard
        ) as observed:
            try:
                return observed.done(await self._within_call_deadline(call, record))
            except Exception as exc:
                redact_exception(exc)
                mark_for_task_tier(exc, self.protection.policy)
                raise

    async def _within_call_deadline(self, call: Call, record: CallRecord) -> ChatResult:
        window = Deadline(self.settings.call_timeout_s)
        try:
            async with window:
                return await self._answer(call, record)
        except TimeoutError:
            if not window.expired:
                raise
            raise CallTimeoutError(
                f"the call to {self.sender.where} did not finish within call_timeout_s="
                f"{self.settings.call_timeout_s:g} s ({record.attempts} HTTP attempt(s), last"
                f" error: {record.last_error or 'none'}); raise call_timeout_s on the ChatModel"
                " or check the endpoint"
            ) from None

    async def _answer(self, call: Call, record: CallRecord) -> ChatResult:
        """Build, fit, send, check; recover from what the in-call tier gave up on."""
        request = build_request(self.settings, call.messages, call.overrides)
        if self.fitter.wants_bigger_model(request):
            return await self._bigger_model(call, request, record)
        sent = request
        try:
            sent = await self.fitter.fit(request, self._summarizer(record))
            started = self._clock()
            result = await self._send(sent, call, record)
        except Exception as exc:
            return await self._recover(exc, call, sent, record)
        return self._finish(result, sent, record, started)

    async def _send(
        self, request: dict[str, Any], call: Call, record: CallRecord, *, wait_out: bool = False
    ) -> ChatResult:
        """Send through the in-call tier. With somewhere else to turn, an open circuit is not
        waited out (`wait_out` waits it out anyway, once the fallbacks failed)."""
        patience = 0.0 if self.fallbacks and not wait_out else None
        return await self.sender.send(
            request, record, stream=call.stream, on_delta=call.on_delta, outage_patience_s=patience
        )

    def _finish(
        self, result: ChatResult, request: dict[str, Any], record: CallRecord, started: float
    ) -> ChatResult:
        """Cost, attempts and latency of the whole logical call, then the outcome check."""
        cost = cost_of(result, request, self.settings.prices)
        latency = self._clock() - started
        return check_outcome(record.stamp(result, cost, self.settings.name, latency), self.settings)

    # --- recovery: when the call cannot be sent as it is ---

    async def _recover(
        self, exc: Exception, call: Call, sent: dict[str, Any], record: CallRecord
    ) -> ChatResult:
        """A context strategy or a fallback for an error the in-call tier gave up on."""
        verdict = self.protection.policy.classify(exc)
        if verdict.action is Action.CONTEXT:
            return await self._after_overflow(exc, call, sent, record)
        if self.fallbacks and _is_outage(verdict):
            return await self._fall_back(exc, call, sent, record)
        raise exc

    async def _after_overflow(
        self, exc: Exception, call: Call, sent: dict[str, Any], record: CallRecord
    ) -> ChatResult:
        """The server said the context overflowed although the count said it fits."""
        if self.fitter.strategy == "bigger_model":
            return await self._bigger_model(call, sent, record)
        shorter = await self.fitter.refit(sent, exc, self._summarizer(record))
        started = self._clock()
        result = await self._send(shorter, call, record)
        return self._finish(result, shorter, record, started)

    async def _bigger_model(
        self, call: Call, request: dict[str, Any], record: CallRecord
    ) -> ChatResult:
        """The call handed to the first fallback whose window fits the prompt."""
        runner = await self.fallbacks.first_fitting(
            lambda settings: self.fitter.fits(request, settings.model, settings.context_window)
        )
        if runner is None:
            self.fitter.fits_nowhere(request)
        return await self.fallbacks.hand_over(runner, call, record)

    async def _fall_back(
        self, exc: Exception, call: Call, sent: dict[str, Any], record: CallRecord
    ) -> ChatResult:
        """The fallbacks' answer; when none answers and this circuit was open, the circuit
        waited out within the outage patience, as if there were no fallback."""
        answered = await self.fallbacks.answer(call, record)
        if isinstance(answered, ChatResult):
            return answered
        if isinstance(exc, CircuitOpenError):
            try:
                started = self._clock()
                result = await self._send(sent, call, record, wait_out=True)
            except Exception as again:
                exc = again
            else:
                return self._finish(result, sent, record, started)
        answered.raise_for(exc, self.sender.where)

    def _summarizer(self, record: CallRecord) -> Summarize:
        """The summary call of `summarize`: a call of its own, with the same checks (the
        window, the in-call tier, the outcome), counted as a part of `record`."""

        async def summarize(messages: list[dict[str, Any]]) -> str:
            request = summary_request(self.settings, messages, SUMMARY_TOKENS)
            self.fitter.check(request)
            part, started = record.part(), self._clock()
            result = await self._send(request, Call(messages), part)
            checked = self._finish(result, request, part, started)
            record.add_side_call(checked)
            return checked.content or ""

        return summarize


def _is_outage(verdict: Verdict) -> bool:
    """Errors a fallback can help with: the endpoint is down or its retries ran out."""
    return verdict.action is Action.RETRY or verdict.reason == "circuit_open"
