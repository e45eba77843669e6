"""What was wrong with an answer, and the bounded conversation that asks again.

`problems_from_error` turns a pydantic `ValidationError` (type errors and the
schema's own `field_validator` / `model_validator` rules alike) into a short list
of problems: field path, what is wrong, the allowed values of an enum or literal.
`reprompt_messages` builds the next request: the original messages, ONE assistant
message with the model's last answer, ONE user message saying what to fix. It is
always built from the original messages, so a second re-prompt replaces the first
correction pair instead of growing the conversation.

Example:
    >>> from pydantic import BaseModel, ValidationError
    >>> from typing import Literal
    >>> class Row(BaseModel):
    ...     status: Literal["open", "closed"]
    >>> try:
    ...     Row.model_validate({"status": "pending"})
    ... except ValidationError as exc:
    ...     print(problems_from_error(exc, Row)[0])
    status: Input should be 'open' or 'closed' (allowed: "open", "closed"; got "pending")
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from prefect_openai_chat.extraction.schema import schema_spec
from prefect_openai_chat.surrogates import escape_surrogates

MAX_PROBLEMS = 12
MISSING = "required field is missing"
MAX_ANSWER_CHARS = 12_000
_PREFIXES = ("Value error, ", "Assertion failed, ")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an answer."""

    path: str
    problem: str
    allowed: tuple[Any, ...] | None = None
    got: str | None = None

    def __str__(self) -> str:
        extra = []
        if self.allowed:
            extra.append(
                "allowed: " + ", ".join(json.dumps(a, ensure_ascii=False) for a in self.allowed)
            )
        if self.got is not None:
            extra.append(f"got {self.got}")
        tail = f" ({'; '.join(extra)})" if extra else ""
        return f"{self.path}: {self.problem}{tail}"


def problems_from_error(
    error: ValidationError, schema: type[BaseModel], limit: int = MAX_PROBLEMS
) -> list[Problem]:
    """The problems in `error`, at most `limit` (the last one says how many more)."""
    root = schema_spec(schema).original
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for err in error.errors(include_url=False):
        loc = tuple(err.get("loc") or ())
        path = format_path(loc)
        message = str(err.get("msg", "invalid"))
        for prefix in _PREFIXES:
            if message.startswith(prefix):
                message = message[len(prefix) :]
        kind = err.get("type", "")
        if kind == "missing":
            message = MISSING
        elif kind == "extra_forbidden":
            message = "unexpected field; remove it"
        if (path, message) in seen:
            continue
        seen.add((path, message))
        allowed = _allowed(root, loc) if kind in ("enum", "literal_error") else None
        shows_input = loc and kind not in ("missing", "extra_forbidden")
        got = _show(err.get("input")) if shows_input else None
        problems.append(Problem(path, message, allowed, got))
    if len(problems) > limit:
        rest = len(problems) - (limit - 1)
        problems = [*problems[: limit - 1], Problem("...", f"and {rest} more problems")]
    return problems


def format_path(loc: Sequence[int | str]) -> str:
    """`("items", 2, "price")` -> `items[2].price`; an empty path is the whole object."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(the whole object)"


def correction_for_problems(problems: Sequence[Problem], *, tool_name: str | None = None) -> str:
    """The user message listing what is wrong with a JSON answer."""
    lines = "\n".join(f"- {p}" for p in problems)
    return (
        f"Your previous answer does not pass validation:\n{lines}\n"
        f"{_ask(tool_name)} Keep the values that were right."
    )


def correction_for_fields(
    problems: Sequence[Problem], keys: Sequence[str], *, tool_name: str | None = None
) -> str:
    """The user message of a re-ask for some fields only: what is wrong, and which to give.

    Short, since the invalid values are in the assistant message just before it and the
    request's schema is of these fields alone (their types and allowed values): no
    "got ...", no list of allowed values, the missing fields on one line, and no closing
    line saying to answer with these fields as JSON (the schema says it).

    Example:
        >>> problems = [Problem("status", "Input should be 'open' or 'closed'", ("open", "closed")),
        ...             Problem("owner", "required field is missing")]
        >>> print(correction_for_fields(problems, ["status", "owner", "due"]))
        Fix only these fields:
        - status: not an allowed value
        - owner, due: missing
    """
    lines = []
    for p in problems:
        if p.path == "...":
            continue
        if p.allowed:
            lines.append(f"- {p.path}: not an allowed value")
        elif p.problem != MISSING:
            lines.append(f"- {p.path}: {p.problem}")
    told = {p.path.split(".")[0].split("[")[0] for p in problems if p.problem != MISSING}
    missing = [k for k in keys if k not in told]
    if missing:
        lines.append(f"- {', '.join(missing)}: missing")
    head = (
        f"Call `{tool_name}` again with only these fields:"
        if tool_name
        else "Fix only these fields:"
    )
    return head + "\n" + "\n".join(lines)


def correction_for_cut(keys: Sequence[str], *, tool_name: str | None = None) -> str:
    """The user message asking for the fields a cut answer did not finish.

    Example:
        >>> print(correction_for_cut(["summary", "tags"]))
        Your answer was cut off. Give only these fields: summary, tags.
    """
    return f"Your answer was cut off. {_only(keys, tool_name)}"


def correction_for_placeholders(keys: Sequence[str], *, tool_name: str | None = None) -> str:
    """The user message asking, in full, for the fields a lazy answer left as placeholders.

    Example:
        >>> print(correction_for_placeholders(["summary", "tags"]))
        Your answer used placeholders. Give only these fields, in full: summary, tags.
    """
    return f"Your answer used placeholders. {_only(keys, tool_name, ', in full')}"


def _only(keys: Sequence[str], tool_name: str | None, how: str = "") -> str:
    asked = ", ".join(keys)
    if tool_name:
        return f"Call `{tool_name}` again with only these fields{how}: {asked}."
    return f"Give only these fields{how}: {asked}."


def correction_for_lazy(markers: Sequence[str], *, tool_name: str | None = None) -> str:
    """The user message asking for the complete content instead of placeholders."""
    shown = ", ".join(repr(m) for m in list(markers)[:3]) or "placeholders"
    return (
        f"Your previous answer left content out and used placeholders ({shown}). "
        f"{_ask(tool_name)} Write every value out in full: no '...', no comments,"
        " no '[truncated]', no 'etc.'."
    )


def correction_for_unparseable(reason: str, *, tool_name: str | None = None) -> str:
    """The user message for an answer that held no usable JSON."""
    return f"Your previous answer was not a usable JSON object ({reason}). {_ask(tool_name)}"


def reprompt_messages(
    base_messages: Sequence[dict[str, Any]], last_answer: str, correction: str
) -> list[dict[str, Any]]:
    """`base_messages` + the model's last answer + the correction, as a new list.

    Pass the ORIGINAL request messages every time: the result then holds exactly
    one correction pair, however many re-prompts came before. A lone surrogate the
    model wrote goes back as its escape (`surrogates`): no request can carry it.

    Example:
        >>> base = [{"role": "user", "content": "Oslo"}]
        >>> msgs = reprompt_messages(base, '{"name": 1}', "name: must be a string")
        >>> [m["role"] for m in msgs], len(base)
        (['user', 'assistant', 'user'], 1)
    """
    answer = last_answer
    if len(answer) > MAX_ANSWER_CHARS:
        answer = answer[:MAX_ANSWER_CHARS] + " [answer cut here]"
    return [
        *(copy.copy(m) for m in base_messages),
        {"role": "assistant", "content": escape_surrogates(answer) or "(empty answer)"},
        {"role": "user", "content": escape_surrogates(correction)},
    ]


def _ask(tool_name: str | None) -> str:
    if tool_name:
        return f"Call `{tool_name}` again with the complete, corrected arguments."
    return "Reply with the complete, corrected JSON object only, with no prose and no code fences."


def _show(value: Any, limit: int = 80) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except ValueError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _allowed(root: dict[str, Any], loc: Sequence[int | str]) -> tuple[Any, ...] | None:
    """The enum / const values the JSON schema allows at `loc`, if any."""
    defs: dict[str, Any] = root.get("$defs") or {}
    node: dict[str, Any] | None = root
    for part in loc:
        if node is None:
            return None
        node = _step(_deref(node, defs), part, defs) or node
    if node is None:
        return None
    values = _enum_values(_deref(node, defs), defs)
    return tuple(values) if values else None


def _step(node: dict[str, Any], part: int | str, defs: dict[str, Any]) -> dict[str, Any] | None:
    variants = [node, *(_deref(v, defs) for v in node.get("anyOf") or [])]
    for variant in variants:
        if isinstance(part, int) and isinstance(variant.get("items"), dict):
            items: dict[str, Any] = variant["items"]
            return items
        props = variant.get("properties") or {}
        if isinstance(part, str) and part in props:
            prop: dict[str, Any] = props[part]
            return prop
    return None


def _deref(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.split("/")[-1] in defs:
        target: dict[str, Any] = defs[ref.split("/")[-1]]
        return target
    return node


def _enum_values(node: dict[str, Any], defs: dict[str, Any]) -> list[Any]:
    if "enum" in node:
        return list(node["enum"])
    if "const" in node:
        return [node["const"]]
    values: list[Any] = []
    for variant in node.get("anyOf") or node.get("oneOf") or []:
        values.extend(_enum_values(_deref(variant, defs), defs))
    return values
