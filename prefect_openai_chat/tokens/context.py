"""Fit a conversation into a model's context window before the call is sent.

`fit_messages` checks prompt tokens plus the completion room against the window
and applies a strategy: `"truncate_oldest"` keeps every system (and developer)
message and the newest turns that fit, never separating an assistant tool call
from its tool results; `"fail"` raises `ContextWindowExceededError` with both
numbers. `split_for_summary` returns (kept, dropped) for a `"summarize"` strategy,
leaving room for the summary message the caller will add. Inputs are never mutated.

Example:
    >>> from prefect_openai_chat.tokens.context import fit_messages
    >>> msgs = [{"role": "system", "content": "Be brief."},
    ...         {"role": "user", "content": "old " * 300},
    ...         {"role": "user", "content": "Hello"}]
    >>> [m["content"] for m in fit_messages(msgs, "gpt-4o-mini", 50, context_window=100)]
    ['Be brief.', 'Hello']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

from prefect_openai_chat.errors import ContextWindowExceededError
from prefect_openai_chat.tokens.counting import REPLY_PRIMER, count_message_tokens
from prefect_openai_chat.tokens.models import model_info
from prefect_openai_chat.tokens.roles import INSTRUCTION_ROLES, RESULT_ROLES

# What to do when a prompt does not fit: the one list (ChatModel, ChatSettings read it).
ContextStrategy = Literal["fail", "truncate_oldest", "summarize", "bigger_model"]
STRATEGIES: tuple[str, ...] = get_args(ContextStrategy)
SUMMARY_TOKENS = 512  # the room of the summary `summarize` asks for
_PINNED_ROLES = INSTRUCTION_ROLES

Message = Mapping[str, Any]


def context_limit(model: str, context_window: int | None = None) -> int:
    """The context window in tokens: `context_window` if given, else the model table's."""
    if context_window is not None:
        if context_window <= 0:
            raise ValueError(f"context_window must be a positive token count, got {context_window}")
        return context_window
    return model_info(model).context_window


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
        raise ContextWindowExceededError.for_prompt(
            model,
            prompt,
            max_completion_tokens,
            limit,
            "shorten the input, lower max_completion_tokens or use context_strategy"
            " 'truncate_oldest'",
        )
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
        raise ContextWindowExceededError.for_prompt(
            model,
            prompt,
            max_completion_tokens,
            limit,
            f"even the system messages{what} do not fit; shorten them",
        )
    return kept_msgs, [dict(messages[i]) for i in dropped]
