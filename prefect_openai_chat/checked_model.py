"""`CheckedModel`: an options object whose refusal is the plugin's own error.

pydantic wraps what a validator raises in its `ValidationError`; for the objects a user
builds by hand (`ExtractionSpec`, `RunOptions`, `BatchApiOptions`) the refusal should
say only what to fix, as `InvalidInputError` (or the plugin error a validator raised).
Inside a flow's parameters (a deployment's JSON) pydantic validates them as usual.

Example:
    >>> class Size(CheckedModel):
    ...     n: int
    >>> Size(n="many")
    Traceback (most recent call last):
    ...
    prefect_openai_chat.errors.InvalidInputError: Size: n: Input should be a valid integer, unable to parse string as an integer (got 'many')
"""  # noqa: E501

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from prefect_openai_chat.errors import ChatError, InvalidInputError


def plain_error(exc: ValidationError, name: str) -> ChatError:
    """The plugin error a validator raised, else `InvalidInputError` naming the field."""
    for error in exc.errors():
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, ChatError):
            return cause
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or name
    return InvalidInputError(f"{name}: {where}: {first['msg']} (got {first.get('input')!r})")


class CheckedModel(BaseModel):
    """A pydantic model whose construction raises the plugin's error, not pydantic's."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise plain_error(exc, type(self).__name__) from None
