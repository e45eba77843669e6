"""Context-window strategies applied before a call, or after the server says it overflowed.

`fail` raises `ContextWindowExceededError` with both numbers; `truncate_oldest`
keeps the system messages and the newest turns that fit; `summarize` condenses the
dropped turns into one system message with a separate call; `bigger_model` hands
the call to the first fallback whose window fits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from prefect_openai_chat.errors import ContextWindowExceededError
from prefect_openai_chat.tokens import count_message_tokens
from prefect_openai_chat.tokens.context import context_limit, fit_messages, split_for_summary

SUMMARY_TOKENS = 512
SUMMARY_PROMPT = (
    "Summarise the earlier part of this conversation in a few sentences. Keep names,"
    " numbers, decisions and open questions; drop pleasantries."
)
Summarize = Callable[[list[dict[str, Any]]], Awaitable[str]]


def completion_room(request: dict[str, Any]) -> int:
    """The completion tokens the request reserves (0 when it leaves it to the API)."""
    return int(request.get("max_completion_tokens") or request.get("max_tokens") or 0)


def overflow(request: dict[str, Any], window: int | None, shrink: float = 1.0) -> int:
    """Tokens over the window (0 when it fits); `shrink` < 1 pretends the window is smaller."""
    model = request["model"]
    limit = int(context_limit(model, window) * shrink)
    prompt = count_message_tokens(request["messages"], model, request.get("tools"))
    return max(0, prompt + completion_room(request) - limit)


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
        kept, dropped = split_for_summary(messages, model, room, SUMMARY_TOKENS, limit, tools)
        if not dropped:
            return request
        summary = await summarize(
            [
                {"role": "system", "content": SUMMARY_PROMPT},
                {"role": "user", "content": _transcript(dropped)},
            ]
        )
        return {**request, "messages": _insert_summary(kept, summary)}
    prompt = count_message_tokens(messages, model, tools)
    raise ContextWindowExceededError(
        f"the prompt ({prompt} tokens) plus the completion room ({room} tokens) exceeds"
        f" {model}'s context window of {limit} tokens; shorten the input, lower"
        " max_completion_tokens, or set context_strategy to truncate_oldest, summarize"
        " or bigger_model on the ChatModel",
        prompt_tokens=prompt,
        limit=limit,
    )


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
    while lead < len(kept) and kept[lead].get("role") in ("system", "developer"):
        lead += 1
    note = {"role": "system", "content": f"Summary of the earlier conversation: {summary}"}
    return [*kept[:lead], note, *kept[lead:]]
