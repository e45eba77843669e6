"""The context fitter: every context-window decision of a call, and the one place that raises
`ContextWindowExceededError`.

Before a call, `ContextFitter.fit` checks the prompt plus the completion room against the
window and applies the strategy: `fail` raises with both numbers; `truncate_oldest` keeps
every system (and developer) message and the newest turns that fit, never separating an
assistant tool call from its tool results; `summarize` condenses the dropped turns into
one system message, through a summary call the caller makes; for `bigger_model`, `fits`
tells which fallback's window takes the prompt. When the server says the context
overflowed although the count said it fits, `refit` shortens to the window the server
named (or 10% under the configured one). `fit_messages` and `split_for_summary` are the
same arithmetic on a plain list of messages. Inputs are never mutated.

Example:
    >>> from prefect_openai_chat.tokens.context import fit_messages
    >>> msgs = [{"role": "system", "content": "Be brief."},
    ...         {"role": "user", "content": "old " * 300},
    ...         {"role": "user", "content": "Hello"}]
    >>> [m["content"] for m in fit_messages(msgs, "gpt-4o-mini", 50, context_window=100)]
    ['Be brief.', 'Hello']
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, get_args

from prefect_openai_chat.errors import ContextWindowExceededError
from prefect_openai_chat.tokens.counting import (
    FORMAT_TOKENS,
    REPLY_PRIMER,
    count_message_tokens,
    count_request_tokens,
    response_format_tokens,
)
from prefect_openai_chat.tokens.encodings import get_encoding
from prefect_openai_chat.tokens.models import model_info
from prefect_openai_chat.tokens.roles import INSTRUCTION_ROLES, RESULT_ROLES

# What to do when a prompt does not fit: the one list (ChatModel, ChatSettings read it).
ContextStrategy = Literal["fail", "truncate_oldest", "summarize", "bigger_model"]
STRATEGIES: tuple[str, ...] = get_args(ContextStrategy)
SUMMARY_TOKENS = 512  # the room of the summary `summarize` asks for
SUMMARY_PROMPT = (
    "Summarise the earlier part of this conversation in a few sentences. Keep names,"
    " numbers, decisions and open questions; drop pleasantries."
)
NOTE_PREFIX = "Summary of the earlier conversation: "
_OMITTED = "[older turns omitted]\n"
_MARGIN = 16  # re-encoding a cut transcript may differ by a few tokens; the marker costs some
# OpenAI and vLLM both say "This model's maximum context length is 1000 tokens. ...".
_SERVER_WINDOW = re.compile(r"maximum context length is (\d+) tokens", re.IGNORECASE)
_PINNED_ROLES = INSTRUCTION_ROLES

Message = Mapping[str, Any]
Request = dict[str, Any]
# Makes the summary call for these messages and returns its text.
Summarize = Callable[[list[dict[str, Any]]], Awaitable[str]]


def context_limit(model: str, context_window: int | None = None) -> int:
    """The context window in tokens: `context_window` if given, else the model table's."""
    if context_window is not None:
        if context_window <= 0:
            raise ValueError(f"context_window must be a positive token count, got {context_window}")
        return context_window
    return model_info(model).context_window


def completion_room(request: Mapping[str, Any]) -> int:
    """The completion tokens the request reserves (0 when it leaves it to the API)."""
    return int(request.get("max_completion_tokens") or request.get("max_tokens") or 0)


def server_window(exc: BaseException) -> int | None:
    """The context window a server named in its overflow error, if it named one.

    Only a size is read from the text; the error's row is decided by its code elsewhere.

    Example:
        >>> server_window(ValueError("This model's maximum context length is 1000 tokens."))
        1000
    """
    match = _SERVER_WINDOW.search(str(getattr(exc, "message", None) or exc))
    return int(match.group(1)) if match else None


def _exceeded(
    model: str,
    prompt: int,
    room: int,
    limit: int | None,
    *,
    fact: str = "",
    counted_by: str = "",
    cause: BaseException | None = None,
) -> NoReturn:
    """The one place that raises `ContextWindowExceededError` (its one wording: `for_prompt`);
    `cause`: the server's error, when the server found it too long."""
    error = ContextWindowExceededError.for_prompt(
        model, prompt, room, limit, fact=fact, counted_by=counted_by
    )
    error.__cause__ = cause
    raise error


@dataclass(frozen=True)
class ContextFitter:
    """The context window of one runner's calls, and what to do when a prompt overflows it.

    Args:
        strategy: One of `STRATEGIES`.
        window: The configured window in tokens (None: the model table's).

    Example:
        >>> fitter = ContextFitter("fail", window=100)
        >>> hi = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
        >>> fitter.overflow(hi), fitter.overflow({**hi, "max_completion_tokens": 500})
        (0, 408)
    """

    strategy: ContextStrategy = "fail"
    window: int | None = None

    def overflow(self, request: Request, shrink: float = 1.0) -> int:
        """Tokens over the window (0 when it fits); `shrink` < 1 pretends it is smaller."""
        limit = int(context_limit(request["model"], self.window) * shrink)
        if _surely_fits(request, limit):  # most requests: no tokenizer needed
            return 0
        return max(0, count_request_tokens(request) + completion_room(request) - limit)

    def wants_bigger_model(self, request: Request) -> bool:
        """Whether the request goes to a fallback with a larger window before it is sent."""
        return self.strategy == "bigger_model" and self.overflow(request) > 0

    def fits(self, request: Request, model: str, window: int | None) -> bool:
        """Whether the request fits `model`'s window (`window` when configured): for
        `bigger_model`, asked of each fallback in turn."""
        needed = count_request_tokens(request) + completion_room(request)
        return needed <= context_limit(model, window)

    def fits_nowhere(self, request: Request) -> NoReturn:
        """`bigger_model` found no fallback whose window fits."""
        model = request["model"]
        _exceeded(
            model,
            count_request_tokens(request),
            completion_room(request),
            context_limit(model, self.window),
            fact="it fits neither this model nor any fallback model",
        )

    def check(self, request: Request) -> None:
        """A request sent as it is (a summary call): it fits, or the error."""
        if self.overflow(request) > 0:
            model = request["model"]
            limit = context_limit(model, self.window)
            _exceeded(model, count_request_tokens(request), completion_room(request), limit)

    async def fit(self, request: Request, summarize: Summarize) -> Request:
        """The request to send: itself when it fits, else shortened by the strategy (`fail`
        raises; `bigger_model` is asked for first, with `wants_bigger_model`)."""
        if self.overflow(request) == 0:
            return request
        return await _shorten(request, self.strategy, self.window, summarize)

    async def refit(self, request: Request, exc: BaseException, summarize: Summarize) -> Request:
        """The request to send again after the server said it overflowed: shortened to the
        window the server named, else to 90% of the configured one (`fail` raises)."""
        window = server_window(exc)  # the server's real window, when its message names it
        if self.strategy == "fail":
            model, room = request["model"], completion_room(request)
            prompt = count_request_tokens(request)
            _exceeded(model, prompt, room, window, counted_by="the server", cause=exc)
        if window is not None:
            return await _shorten(request, self.strategy, window, summarize)
        # The configured window is too large by an unknown amount: aim 10% lower.
        return await _shorten(request, self.strategy, self.window, summarize, 0.9)


def _surely_fits(request: Request, limit: int) -> bool:
    """True when the request fits `limit` tokens even at one token per UTF-8 byte.

    A token of a byte-level BPE is at least one byte and a character at most four,
    so this bound needs no tokenizer. Requests near the limit, and those with tools
    or non-text parts, are counted exactly instead.
    """
    if request.get("tools"):
        return False
    chars = 0
    for message in request["messages"]:
        for value in message.values():
            if isinstance(value, str):
                chars += len(value)
            elif value is not None:
                return False
    per_message = 4  # 3 tokens of overhead, 1 more for a name
    # The format's schema counted once per format object (`FORMAT_TOKENS`), not per call:
    # a format changed in place keeps its first count here, and the server's overflow
    # answer is then refitted like any other (`refit`).
    fixed = _fixed_room(request, FORMAT_TOKENS)
    bound = 4 * chars + per_message * len(request["messages"]) + 3 + fixed
    return bound <= limit


def _fixed_room(
    request: Request, formats: Callable[[Any, str], int] = response_format_tokens
) -> int:
    """What the messages cannot use: the completion room and the response format's schema
    (counted by `formats`)."""
    return completion_room(request) + formats(request.get("response_format"), request["model"])


async def _shorten(
    request: Request,
    strategy: str,
    window: int | None,
    summarize: Summarize,
    shrink: float = 1.0,
) -> Request:
    """A copy of `request` whose messages fit `window` (times `shrink`) by `strategy`."""
    model, room = request["model"], _fixed_room(request)
    limit = int(context_limit(model, window) * shrink)
    messages, tools = request["messages"], request.get("tools")
    if strategy == "summarize":
        note = count_message_tokens([{"role": "system", "content": NOTE_PREFIX}], model)
        reserve = SUMMARY_TOKENS + note  # the summary arrives wrapped in a system message
        kept, dropped = split_for_summary(messages, model, room, reserve, limit, tools)
        if not dropped:
            return request
        summary = await summarize(_summary_request(_transcript(dropped), model, limit))
        return {**request, "messages": _insert_summary(kept, summary)}
    return {**request, "messages": fit_messages(messages, model, room, strategy, limit, tools)}


def _units(messages: Sequence[Message]) -> list[list[int]]:
    """Indices of non-pinned messages grouped into units that are kept or dropped together.

    A tool (or legacy function) result joins the unit before it, so an assistant
    message with `tool_calls` is never separated from its results.
    """
    units: list[list[int]] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        if role in _PINNED_ROLES:
            continue
        if role in RESULT_ROLES and units:
            units[-1].append(i)
        else:
            units.append([i])
    return units


def _split(
    messages: Sequence[Message],
    model: str,
    budget: int,
    tools: Sequence[Mapping[str, Any]] | None,
) -> tuple[list[int], list[int]]:
    """(kept, dropped) indices: pinned messages plus the newest units within `budget` tokens."""
    base = count_message_tokens([], model, tools)  # reply primer and tool definitions
    cost = [count_message_tokens([m], model) - REPLY_PRIMER for m in messages]
    pinned = [i for i, m in enumerate(messages) if m.get("role") in _PINNED_ROLES]
    used = base + sum(cost[i] for i in pinned)
    kept = set(pinned)
    dropped: list[int] = []
    fitting = True
    for unit in reversed(_units(messages)):
        unit_cost = sum(cost[i] for i in unit)
        if fitting and used + unit_cost <= budget:
            used += unit_cost
            kept.update(unit)
        else:
            fitting = False  # keep a contiguous newest tail: never skip a turn to fit an older one
            dropped[:0] = unit
    return sorted(kept), dropped


def fit_messages(
    messages: Sequence[Message],
    model: str,
    max_completion_tokens: int,
    strategy: str = "truncate_oldest",
    context_window: int | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Return (copies of) `messages` that fit the context window with room for the answer.

    Args:
        messages: The chat messages; not modified.
        model: The model name (its table entry gives the window and the encoding).
        max_completion_tokens: Room to leave for the answer.
        strategy: `"truncate_oldest"` or `"fail"` (`"summarize"` and `"bigger_model"`
            need another call or another model: use `split_for_summary` or the fallbacks).
        context_window: Override the model table's window.
        tools: Tool definitions sent with the request (they count too).

    Raises:
        ContextWindowExceededError: With `"fail"`, or when even the system messages
            and the newest turn do not fit.
    """
    if strategy not in ("truncate_oldest", "fail"):
        if strategy in STRATEGIES:
            raise ValueError(
                f"fit_messages cannot apply {strategy!r} by itself: for 'summarize' use"
                " split_for_summary and summarize the dropped turns; for 'bigger_model' pick"
                " a fallback model whose window fits"
            )
        raise ValueError(f"unknown context strategy {strategy!r}; choose one of {STRATEGIES}")
    limit = context_limit(model, context_window)
    prompt = count_message_tokens(messages, model, tools)
    if prompt + max_completion_tokens <= limit:
        return [dict(m) for m in messages]
    if strategy == "fail":
        _exceeded(model, prompt, max_completion_tokens, limit)
    kept, _ = _keep_newest(
        messages, model, max_completion_tokens, 0, limit, tools, prompt, " and the newest turn"
    )
    return kept


def split_for_summary(
    messages: Sequence[Message],
    model: str,
    max_completion_tokens: int,
    summary_tokens: int = SUMMARY_TOKENS,
    context_window: int | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split `messages` into (kept, dropped), leaving room for a summary of `dropped`.

    `kept` holds every system message and the newest turns that fit beside a summary
    message of up to `summary_tokens` tokens; `dropped` holds the older turns in their
    order (empty when everything fits). The caller summarises `dropped` and inserts
    the summary as a system message after the leading system messages of `kept`.

    Example:
        >>> msgs = [{"role": "user", "content": "old " * 300}, {"role": "user", "content": "Hi"}]
        >>> kept, dropped = split_for_summary(msgs, "gpt-4o-mini", 50, 20, context_window=100)
        >>> [m["content"] for m in kept], len(dropped)
        (['Hi'], 1)
    """
    limit = context_limit(model, context_window)
    prompt = count_message_tokens(messages, model, tools)
    if prompt + max_completion_tokens <= limit:
        return [dict(m) for m in messages], []
    return _keep_newest(
        messages,
        model,
        max_completion_tokens,
        summary_tokens,
        limit,
        tools,
        prompt,
        ", a summary and the newest turn",
    )


def _keep_newest(
    messages: Sequence[Message],
    model: str,
    max_completion_tokens: int,
    reserve: int,
    limit: int,
    tools: Sequence[Mapping[str, Any]] | None,
    prompt: int,
    what: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept, dropped) copies: pinned messages and the newest turns within the room left."""
    kept, dropped = _split(messages, model, limit - max_completion_tokens - reserve, tools)
    kept_msgs = [dict(messages[i]) for i in kept]
    if not any(m.get("role") not in _PINNED_ROLES for m in kept_msgs):
        fact = f"even the system messages{what} do not fit"
        _exceeded(model, prompt, max_completion_tokens, limit, fact=fact)
    return kept_msgs, [dict(messages[i]) for i in dropped]


def _summary_request(transcript: str, model: str, limit: int) -> list[dict[str, Any]]:
    """The summary call's messages; the transcript keeps its newest part if it cannot fit.

    The summary call has the same window as the call itself: the dropped turns plus
    the summary's own room must fit it too.
    """
    frame = [{"role": "system", "content": SUMMARY_PROMPT}, {"role": "user", "content": ""}]
    budget = limit - SUMMARY_TOKENS - count_message_tokens(frame, model) - _MARGIN
    encoding = get_encoding(model_info(model).encoding)
    tokens = encoding.encode_ordinary(transcript)
    if len(tokens) > budget:
        transcript = _OMITTED + encoding.decode(tokens[len(tokens) - max(0, budget) :])
    return [frame[0], {"role": "user", "content": transcript}]


def _transcript(messages: list[dict[str, Any]]) -> str:
    lines = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        lines.append(f"{message.get('role')}: {content or ''}")
    return "\n".join(lines)


def _insert_summary(kept: list[dict[str, Any]], summary: str) -> list[dict[str, Any]]:
    lead = 0
    while lead < len(kept) and kept[lead].get("role") in INSTRUCTION_ROLES:
        lead += 1
    note = {"role": "system", "content": f"{NOTE_PREFIX}{summary}"}
    return [*kept[:lead], note, *kept[lead:]]
