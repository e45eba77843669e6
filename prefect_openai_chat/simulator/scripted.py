"""Scripted answers: exactly this content for the request whose record contains a marker.

`SimulatorSettings.answers` maps a marker (any text) to a `ScriptedAnswer`. A chat request
whose record text (its user messages before the first assistant message, the same text
the JSON answers are filled from) contains the marker gets that content as it is (or that
refusal), for a first answer and a re-prompt alike, whatever the schema asks for; a forced
tool call carries it as the call's arguments. Markers are tried in the mapping's order.
HTTP faults still apply; content and JSON faults do not.

Example:
    >>> from prefect_openai_chat.simulator.request import parse_chat_request
    >>> req = parse_chat_request(
    ...     b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "row @7@"}]}'
    ... )
    >>> answer = scripted_answer(req, {"@7@": ScriptedAnswer(content='{"n": 1}')})
    >>> answer.choices[0].content
    '{"n": 1}'
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from prefect_openai_chat.simulator.answers import (
    Answer,
    Choice,
    _record_text,
    json_target,
)
from prefect_openai_chat.simulator.request import ChatRequest
from prefect_openai_chat.simulator.text import cut_tokens


class ScriptedAnswer(BaseModel):
    """What the model says to a request whose record contains the marker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    content: str | None = Field(default=None, description="The message content, sent as is.")
    refusal: str | None = Field(
        default=None, description="A refusal (`message.refusal`; content None) instead."
    )


def scripted_answer(req: ChatRequest, answers: Mapping[str, ScriptedAnswer]) -> Answer | None:
    """The scripted answer for `req`, or None when its record holds no marker of `answers`."""
    if not answers:
        return None
    text = _record_text(req.messages)
    found = next((answers[m] for m in answers if m and m in text), None)
    if found is None:
        return None
    return Answer([_choice(req, found) for _ in range(req.n)], False, None)


def _choice(req: ChatRequest, scripted: ScriptedAnswer) -> Choice:
    model = req.model
    if scripted.refusal is not None:
        return Choice(None, "stop", cut_tokens(scripted.refusal, 10**6, model)[1], scripted.refusal)
    limit = req.max_tokens if req.max_tokens is not None else 10**6
    text, count, was_cut = cut_tokens(scripted.content or "", limit, model)
    finish = "length" if was_cut else "stop"
    target = json_target(req)
    if target is not None and target.tool_name is not None:
        call_id = "call_" + secrets.token_hex(12)
        finish = target.tool_finish if finish == "stop" else finish
        return Choice(text, finish, count, tool_name=target.tool_name, tool_call_id=call_id)
    return Choice(text, finish, count)
