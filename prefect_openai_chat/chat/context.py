"""Context-window strategies applied before a call, or after the server says it overflowed.

`fail` raises `ContextWindowExceededError` with both numbers; `truncate_oldest`
keeps the system messages and the newest turns that fit; `summarize` condenses the
dropped turns into one system message with a separate call; `bigger_model` hands
the call to the first fallback whose window fits.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from prefect_openai_chat.errors import ContextWindowExceededError
from prefect_openai_chat.tokens import count_message_tokens, get_encoding, model_info
from prefect_openai_chat.tokens.context import (
    STRATEGIES,
    SUMMARY_TOKENS,
    context_limit,
    fit_messages,
    split_for_summary,
)
from prefect_openai_chat.tokens.roles import INSTRUCTION_ROLES

SUMMARY_PROMPT = (
    "Summarise the earlier part of this conversation in a few sentences. Keep names,"
    " numbers, decisions and open questions; drop pleasantries."
)
Summarize = Callable[[list[dict[str, Any]]], Awaitable[str]]
NOTE_PREFIX = "Summary of the earlier conversation: "
_OMITTED = "[older turns omitted]\n"
_MARGIN = 16  # re-encoding a cut transcript may differ by a few tokens; the marker costs some
# OpenAI and vLLM both say "This model's maximum context length is 1000 tokens. ...".
_SERVER_WINDOW = re.compile(r"maximum context length is (\d+) tokens", re.IGNORECASE)


def server_window(exc: BaseException) -> int | None:
    """The context window a server named in its overflow error, if it named one.

    Only a size is read from the text; the error's row is decided by its code elsewhere.

    Example:
        >>> server_window(ValueError("This model's maximum context length is 1000 tokens."))
        1000
    """
    match = _SERVER_WINDOW.search(str(getattr(exc, "message", None) or exc))
    return int(match.group(1)) if match else None


def completion_room(request: dict[str, Any]) -> int:
    """The completion tokens the request reserves (0 when it leaves it to the API)."""
    return int(request.get("max_completion_tokens") or request.get("max_tokens") or 0)


def overflow(request: dict[str, Any], window: int | None, shrink: float = 1.0) -> int:
    """Tokens over the window (0 when it fits); `shrink` < 1 pretends the window is smaller."""
    model = request["model"]
    limit = int(context_limit(model, window) * shrink)
    if _surely_fits(request, limit):  # most requests: no tokenizer needed
        return 0
    prompt = count_message_tokens(request["messages"], model, request.get("tools"))
    return max(0, prompt + completion_room(request) - limit)


def _surely_fits(request: dict[str, Any], limit: int) -> bool:
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
    bound = 4 * chars + per_message * len(request["messages"]) + 3 + completion_room(request)
    return bound <= limit


async def shorten(
    request: dict[str, Any],
    strategy: str,
    window: int | None,
    summarize: Summarize,
    shrink: float = 1.0,
) -> dict[str, Any]:
    """A copy of `request` whose messages fit, by `strategy` (`fail` raises)."""
    model, room = request["model"], completion_room(request)
    limit = int(context_limit(model, window) * shrink)
    messages, tools = request["messages"], request.get("tools")
    if strategy == "truncate_oldest":
        fitted = fit_messages(messages, model, room, "truncate_oldest", limit, tools)
        return {**request, "messages": fitted}
    if strategy == "summarize":
        note = count_message_tokens([{"role": "system", "content": NOTE_PREFIX}], model)
        reserve = SUMMARY_TOKENS + note  # the summary arrives wrapped in a system message
        kept, dropped = split_for_summary(messages, model, room, reserve, limit, tools)
        if not dropped:
            return request
        summary = await summarize(_summary_request(_transcript(dropped), model, limit))
        return {**request, "messages": _insert_summary(kept, summary)}
    prompt = count_message_tokens(messages, model, tools)
    others = ", ".join(s for s in STRATEGIES if s != "fail")
    raise ContextWindowExceededError.for_prompt(
        model,
        prompt,
        room,
        limit,
        "shorten the input, lower max_completion_tokens, or set context_strategy to one of"
        f" {others} on the ChatModel",
    )


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
