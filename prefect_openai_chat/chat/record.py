"""The accounting of one logical call: one record per call, as tenacity keeps one
`RetryCallState` per retried call.

A record counts the call's HTTP attempts (the one counter behind `ChatResult.http_attempts`)
and, of those, the 429 answers the retry loop classified (`ChatResult.http_429s`),
keeps its last error (for `CallTimeoutError`'s message) and adds up what its summary calls
used and cost. A summary call and each fallback tried are parts of the call: each has a
record of its own, and its attempts and errors count in its caller's record too.

Example:
    >>> record = CallRecord()
    >>> record.attempt_started()
    >>> record.attempt_failed(TimeoutError("stalled"))
    >>> fallback = record.part()
    >>> fallback.attempt_started()
    >>> fallback.answered_429()
    >>> record.attempts, fallback.attempts, record.last_error, record.http_429s
    (2, 1, 'TimeoutError: stalled', 1)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prefect_openai_chat.resilience import describe_error
from prefect_openai_chat.results import ChatResult, Usage
from prefect_openai_chat.tokens import estimate_cost
from prefect_openai_chat.tokens.prices import Price


@dataclass(eq=False)
class CallRecord:
    """What one logical call spent so far.

    Attributes:
        caller: The record of the call this one is part of (a summary's, a fallback's).
        attempts: HTTP attempts of this call and of its parts.
        http_429s: Of those, the ones answered 429 (rate limit or quota).
        last_error: The last failed attempt's error, described without secrets.
        side_usage: Usage of this call's summary calls (None: none made).
        side_cost: Their cost (None when a price is unknown).
    """

    caller: CallRecord | None = None
    attempts: int = 0
    http_429s: int = 0
    last_error: str | None = None
    side_usage: Usage | None = None
    side_cost: float | None = 0.0

    def part(self) -> CallRecord:
        """The record of a summary call or a fallback made for this call."""
        return CallRecord(caller=self)

    def _and_callers(self) -> Iterator[CallRecord]:
        """This record, then its caller's, up to the logical call's own."""
        record: CallRecord | None = self
        while record is not None:
            yield record
            record = record.caller

    def attempt_started(self) -> None:
        """One more HTTP attempt, here and in every caller's record."""
        for record in self._and_callers():
            record.attempts += 1

    def answered_429(self) -> None:
        """The attempt was answered 429, here and in every caller's record."""
        for record in self._and_callers():
            record.http_429s += 1

    def attempt_failed(self, error: BaseException) -> None:
        """The attempt failed with `error`: the last error here and in every caller's record."""
        text = describe_error(error)
        for record in self._and_callers():
            record.last_error = text

    def add_side_call(self, result: ChatResult) -> None:
        """A summary call's finished result: its usage and cost join this call's."""
        used, cost = self.side_usage, result.cost_usd
        self.side_usage = result.usage if used is None else used + result.usage
        self.side_cost = None if cost is None or self.side_cost is None else self.side_cost + cost

    def stamp(
        self, result: ChatResult, cost: float | None, answered_by: str, latency_s: float
    ) -> ChatResult:
        """The result as the caller sees it: usage and cost with the summary calls', the
        attempts of the whole call, who answered and how long the send took."""
        update: dict[str, Any] = {
            "usage": result.usage,
            "cost_usd": cost,
            "http_attempts": self.attempts,
            "http_429s": self.http_429s,
            "latency_s": latency_s,
            "answered_by": answered_by,
        }
        return result.model_copy(update=self._with_side_calls(update))

    def carry(self, result: ChatResult) -> ChatResult:
        """A fallback's result, with this call's attempts and summary calls added."""
        update = {"usage": result.usage, "cost_usd": result.cost_usd}
        update["http_attempts"] = self.attempts
        update["http_429s"] = self.http_429s
        return result.model_copy(update=self._with_side_calls(update))

    def static_answer(self, text: str) -> ChatResult:
        """The static fallback's answer: it costs nothing; the attempts are the call's."""
        return ChatResult(
            content=text,
            finish_reason="stop",
            model="static",
            answered_by="static",
            http_attempts=self.attempts,
            http_429s=self.http_429s,
        )

    def _with_side_calls(self, update: dict[str, Any]) -> dict[str, Any]:
        if self.side_usage is not None:
            update["usage"] = update["usage"] + self.side_usage
            cost, side = update["cost_usd"], self.side_cost
            update["cost_usd"] = None if cost is None or side is None else cost + side
        return update


def cost_of(
    result: ChatResult, request: Mapping[str, Any], prices: Mapping[str, Price] | None
) -> float | None:
    """The estimated cost of one answer, at `prices` when given."""
    usage = result.usage
    return estimate_cost(
        result.model or request["model"],
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.cached_tokens,
        prices=prices,
    )
