"""The fallback chain: the runners tried in order when the primary is down, then the static text.

Each fallback tried is a call of its own: its own `CallRecord` (a part of the caller's,
so its attempts count in the caller's `http_attempts`), its own circuit, retries, outage
patience and `call_timeout_s`, all within the caller's `call_timeout_s`. A fallback block
is loaded when a call first needs it; a missing one is logged, skipped, and named if
nothing answers. When every fallback fails, the caller's error says so in its own message
(`...; fallback 'azure' failed too: InvalidInputError(...)`), so a Prefect task's state
message shows the real cause, not only the notes under a traceback.

Example:
    >>> chain = FallbackChain(static="Unavailable right now.")
    >>> bool(chain), bool(FallbackChain())
    (True, False)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

from prefect_openai_chat.chat.record import CallRecord
from prefect_openai_chat.chat.request import Call
from prefect_openai_chat.chat.settings import ChatSettings
from prefect_openai_chat.errors import MissingFallbackError, add_to_message
from prefect_openai_chat.resilience import describe_error
from prefect_openai_chat.results import ChatResult

logger = logging.getLogger("prefect_openai_chat")


class Fallback(Protocol):
    """What the chain needs of a fallback runner (a `ChatRunner`)."""

    settings: ChatSettings

    def run(self, call: Call, record: CallRecord) -> Awaitable[ChatResult]: ...


FallbackLoader = Callable[[], Awaitable[Fallback]]  # loads a fallback when first needed


@dataclass
class Unanswered:
    """No fallback answered: the missing ones and how the others failed."""

    missing: list[MissingFallbackError] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def raise_for(self, exc: Exception, where: str) -> NoReturn:
        """Raise the caller's `exc` with the fallbacks' failures in its message, or
        `MissingFallbackError` when a fallback block is not saved."""
        if self.missing:
            raise MissingFallbackError(
                f"{where} failed ({describe_error(exc)}) and no fallback could answer: "
                + "; ".join([*(str(m) for m in self.missing), *self.failures])
            ) from exc
        if self.failures:
            add_to_message(exc, "; ".join(self.failures))
        raise exc


class FallbackChain:
    """The fallbacks of one runner, tried in order, and the static text after them.

    Args:
        fallbacks: Runners, or async loaders of runners (called only when needed).
        static: The text answered when every fallback failed too.
    """

    def __init__(
        self, fallbacks: Sequence[Fallback | FallbackLoader] = (), static: str | None = None
    ) -> None:
        self.fallbacks = list(fallbacks)
        self.static = static

    def __bool__(self) -> bool:
        return bool(self.fallbacks) or self.static is not None

    async def answer(self, call: Call, record: CallRecord) -> ChatResult | Unanswered:
        """The first fallback's answer to `call`, else the static text, else why not."""
        unanswered = Unanswered()
        for fallback in self.fallbacks:
            try:
                runner = await _load(fallback)
            except MissingFallbackError as missing:
                unanswered.missing.append(missing)
                logger.warning("%s", missing)
                continue
            try:
                return await self.hand_over(runner, call, record)
            except Exception as exc:
                name = runner.settings.name
                unanswered.failures.append(f"fallback {name!r} failed too: {exc!r:.200}")
        if self.static is not None:
            return record.static_answer(self.static)
        return unanswered

    async def first_fitting(self, fits: Callable[[ChatSettings], bool]) -> Fallback | None:
        """The first fallback whose settings `fits` accepts (for `bigger_model`)."""
        for fallback in self.fallbacks:
            runner = await _load(fallback)
            if fits(runner.settings):
                return runner
        return None

    @staticmethod
    async def hand_over(runner: Fallback, call: Call, record: CallRecord) -> ChatResult:
        """`call` answered by `runner`, as a part of the call `record` counts."""
        return record.carry(await runner.run(call.for_fallback(), record.part()))


async def _load(fallback: Fallback | FallbackLoader) -> Fallback:
    """The fallback's runner, loading it on first use."""
    return await fallback() if callable(fallback) else fallback
