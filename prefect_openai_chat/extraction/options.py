"""How one record is extracted (`ExtractionOptions`): everything but the call, the schema
and the text, checked when made.

Example:
    >>> ExtractionOptions(model="gpt-4o-mini").max_reprompts
    2
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prefect_openai_chat.errors import InvalidInputError


@dataclass(frozen=True)
class ExtractionOptions:
    """How one record is extracted: everything but the call, the schema and the text.

    Checked when made: a bad number raises `InvalidInputError` saying which and why.

    Attributes:
        model: Model name: decides the "auto" mode, token counts, limits and prices.
        instructions: What to extract; a sensible default otherwise.
        mode: "auto", "json_schema", "json_object" or "tools".
        max_reprompts: Re-asks after an invalid, unparseable or lazy answer.
        reask_scope: "fields" (default): when only some fields are invalid, re-ask for
            those alone (a schema of just them, the record, the invalid values) and keep
            the others; errors that are not about one field get a whole re-ask.
            "whole": every re-ask carries the whole exchange and asks for the whole object.
        token_budget: Most tokens (prompt + completion, all calls) for this record.
        max_completion_tokens: Completion limit of the first call (None: the server's).
        max_length_retries: Re-sends with more room after `finish_reason == "length"`.
        length_growth: Factor by which the completion limit grows on a re-send after a
            cut answer. The first re-send is sized from the longest complete answer to
            the same schema seen in this process (+25%) when there is one.
        max_completion_cap: Upper bound for the grown limit (the model's maximum anyway).
        on_error: "raise" lets errors of `call` other than truncation and content filter
            propagate; "return" turns them into `outcome="error"` with what was spent.

    Example:
        >>> ExtractionOptions(model="gpt-4o-mini", max_reprompts=-1)
        Traceback (most recent call last):
        ...
        prefect_openai_chat.errors.InvalidInputError: max_reprompts must be >= 0, got -1
    """

    model: str
    instructions: str | None = None
    mode: str = "auto"
    max_reprompts: int = 2
    reask_scope: Literal["fields", "whole"] = "fields"
    token_budget: int | None = None
    max_completion_tokens: int | None = None
    max_length_retries: int = 2
    length_growth: float = 2.0
    max_completion_cap: int | None = None
    on_error: Literal["raise", "return"] = "raise"

    def __post_init__(self) -> None:
        _check_numbers(self)


def _check_numbers(o: ExtractionOptions) -> None:
    checks = [
        (o.max_reprompts >= 0, f"max_reprompts must be >= 0, got {o.max_reprompts}"),
        (
            o.max_length_retries >= 0,
            f"max_length_retries must be >= 0, got {o.max_length_retries}",
        ),
        (o.length_growth > 1, f"length_growth must be > 1, got {o.length_growth}"),
        (
            o.token_budget is None or o.token_budget > 0,
            f"token_budget must be > 0, got {o.token_budget}",
        ),
        (
            o.max_completion_tokens is None or o.max_completion_tokens > 0,
            f"max_completion_tokens must be > 0, got {o.max_completion_tokens}",
        ),
        (
            o.max_completion_cap is None or o.max_completion_cap > 0,
            f"max_completion_cap must be > 0, got {o.max_completion_cap}",
        ),
        (
            o.reask_scope in ("fields", "whole"),
            f"reask_scope must be 'fields' or 'whole', got {o.reask_scope!r}",
        ),
        (
            o.on_error in ("raise", "return"),
            f"on_error must be 'raise' or 'return', got {o.on_error!r}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise InvalidInputError(message)
