"""What the simulated model says: prose, JSON instances, tool calls, and their content faults.

The content depends only on (seed, request body); faults come from the caller.

Example:
    >>> from prefect_openai_chat.simulator.request import parse_chat_request
    >>> req = parse_chat_request(
    ...     b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
    ... )
    >>> answer = build_answer(req, (), seed=7, u_reprompt=1.0, reprompt_failure_rate=0.0)
    >>> answer.choices[0].finish_reason
    'stop'
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
from dataclasses import dataclass
from typing import Any

from prefect_openai_chat.simulator.facts import TextFacts
from prefect_openai_chat.simulator.faults import CONTENT_FAULTS, JSON_FAULTS
from prefect_openai_chat.simulator.jsonfaults import dumps, render_json_fault
from prefect_openai_chat.simulator.request import ChatRequest
from prefect_openai_chat.simulator.schema import SchemaFiller
from prefect_openai_chat.simulator.text import cut_tokens, prose
from prefect_openai_chat.tokens.roles import INSTRUCTION_ROLES

REFUSAL = "I'm sorry, but I can't assist with that request."
_LAZY_TAILS = (
    "\n\n// ... rest of code",
    "\n\n... (the rest follows the same pattern)",
    "\n\n[truncated]",
)
_REPROMPT_FAILURES = ("missing-fields", "wrong-types", "malformed-json")
_MAX_SCAN = 200
_INFLATE_LIMIT = 8192
_COUNT_LIMIT = 64 * 1024


@dataclass
class Choice:
    """One generated choice."""

    content: str | None
    finish_reason: str
    completion_tokens: int
    refusal: str | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


@dataclass
class Answer:
    """All choices of one request, and what was applied."""

    choices: list[Choice]
    reprompt: bool
    fault: str | None  # the content or JSON fault applied, if any

    @property
    def completion_tokens(self) -> int:
        """What all the choices wrote, in tokens."""
        return sum(choice.completion_tokens for choice in self.choices)


@dataclass(frozen=True)
class JsonTarget:
    """What JSON the request asks for: a schema (or None for any object), maybe via a tool."""

    schema: dict[str, Any] | None
    tool_name: str | None = None
    tool_finish: str = "tool_calls"


def content_seed(seed: int, body: dict[str, Any]) -> int:
    """Hash of the seed and the request body (stream flags left out)."""
    canonical = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    digest = hashlib.blake2b(
        f"{seed}|".encode() + json.dumps(canonical, sort_keys=True, default=str).encode(),
        digest_size=8,
    ).digest()
    return int.from_bytes(digest, "big")


def json_target(req: ChatRequest) -> JsonTarget | None:
    """The JSON the request asks for, or None for a plain prompt."""
    choice = req.tool_choice
    if req.tools and (isinstance(choice, dict) or choice == "required"):
        if isinstance(choice, dict):
            name = choice["function"]["name"]
            tool = next(t for t in req.tools if t["function"]["name"] == name)
            finish = "stop"  # the real API ends a named forced call with "stop"
        else:
            tool, finish = req.tools[0], "tool_calls"
        params = tool["function"].get("parameters") or {"type": "object", "properties": {}}
        return JsonTarget(params, tool["function"]["name"], finish)
    fmt = req.response_format
    if fmt and fmt["type"] == "json_schema":
        schema = fmt["json_schema"].get("schema")
        return JsonTarget(schema if schema else None)
    found = _schema_in_system(req.messages)
    if fmt and fmt["type"] == "json_object":
        return JsonTarget(found)
    return JsonTarget(found) if found is not None else None


def is_reprompt(messages: list[dict[str, Any]]) -> bool:
    """True when an assistant message is followed by a later user message."""
    seen_assistant = False
    for message in messages:
        if message["role"] == "assistant":
            seen_assistant = True
        elif message["role"] == "user" and seen_assistant:
            return True
    return False


def build_answer(
    req: ChatRequest,
    faults: tuple[str, ...],
    *,
    seed: int,
    u_reprompt: float,
    reprompt_failure_rate: float,
    refusal: str | None = None,
) -> Answer:
    """The choices for `req` under `faults` (only content and JSON faults matter here);
    `refusal` is what the `refusal` fault says (None: `REFUSAL`)."""
    target = json_target(req)
    base = content_seed(seed, req.body)
    content_fault = next((f for f in faults if f in CONTENT_FAULTS), None)
    json_fault = next((f for f in faults if f in JSON_FAULTS), None) if target else None
    reprompt = target is not None and is_reprompt(req.messages)
    if reprompt:
        if u_reprompt < reprompt_failure_rate:
            json_fault = json_fault or _REPROMPT_FAILURES[base % len(_REPROMPT_FAILURES)]
        else:
            json_fault = content_fault = None
    facts = TextFacts(_record_text(req.messages)) if target else None
    choices = []
    for index in range(req.n):
        rng = random.Random(base + index)
        if target is not None and facts is not None:
            choice = _json_choice(req, target, facts, rng, seed, json_fault, content_fault)
        else:
            choice = _text_choice(req, rng, content_fault)
        if choice.refusal is not None and refusal is not None:
            choice = _refused(refusal, req.model)
        choices.append(choice)
    return Answer(choices, reprompt, json_fault or content_fault)


def _refused(text: str, model: str) -> Choice:
    """A refusal saying `text` (past 64 KiB counted at 4 characters a token, to stay fast)."""
    tokens = len(text) // 4 if len(text) > _COUNT_LIMIT else cut_tokens(text, 10**6, model)[1]
    return Choice(None, "stop", tokens, refusal=text)


def _text_choice(req: ChatRequest, rng: random.Random, fault: str | None) -> Choice:
    model = req.model
    if fault == "refusal":
        return _refused(REFUSAL, model)
    # A natural answer of 20 to 60 tokens; `max_tokens` only cuts it, as it does the real API.
    length = rng.randint(20, 60)
    text = prose(rng, length, model)
    if fault == "lazy":
        text = cut_tokens(text, max(3, length // 3), model)[0] + rng.choice(_LAZY_TAILS)
    if fault == "content-filter":
        partial = cut_tokens(text, length // 3, model)[0] if rng.random() < 0.5 else ""
        return Choice(partial, "content_filter", cut_tokens(partial, 10**6, model)[1])
    limit = req.max_tokens if req.max_tokens is not None else 10**6
    text, count, was_cut = cut_tokens(text, limit, model)
    return Choice(text, "length" if was_cut else "stop", count)


def _json_choice(
    req: ChatRequest,
    target: JsonTarget,
    facts: TextFacts,
    rng: random.Random,
    seed: int,
    json_fault: str | None,
    content_fault: str | None,
) -> Choice:
    model = req.model
    if content_fault == "refusal":
        return _refused(REFUSAL, model)
    if target.schema is not None:
        instance = SchemaFiller(target.schema, facts, rng, seed).instance()
    else:
        instance = _generic_object(facts, rng, model)
    fault = json_fault or ("lazy" if content_fault == "lazy" else None)
    text = render_json_fault(fault, instance, target.schema, rng) if fault else dumps(instance)
    limit = req.max_tokens if req.max_tokens is not None else 10**6
    if fault == "truncated-json":
        text, count = _truncate(text, req.max_tokens, model)
        finish = "length"
    else:
        text, count, was_cut = cut_tokens(text, limit, model)
        finish = "length" if was_cut else "stop"
    if content_fault == "content-filter":
        partial = cut_tokens(text, count // 2, model)[0] if rng.random() < 0.5 else ""
        return Choice(partial, "content_filter", cut_tokens(partial, 10**6, model)[1])
    if target.tool_name is not None:
        call_id = "call_" + secrets.token_urlsafe(18).replace("-", "a").replace("_", "b")[:24]
        finish = target.tool_finish if finish == "stop" else finish
        return Choice(text, finish, count, tool_name=target.tool_name, tool_call_id=call_id)
    return Choice(text, finish, count)


def _truncate(text: str, max_tokens: int | None, model: str) -> tuple[str, int]:
    """Cut JSON mid-way: at `max_tokens` (inflating a long value first), else at two thirds."""
    full = cut_tokens(text, 10**6, model)[1]
    if max_tokens is not None and max_tokens <= _INFLATE_LIMIT:
        if full <= max_tokens:  # the model rambles inside the last string until the cap
            cut_at = text.rfind('"', 0, max(1, text.rfind('"')))
            filler = " and so on" * (max_tokens - full + 4)
            text = (
                text[: cut_at + 1] + filler + text[cut_at + 1 :] if cut_at >= 0 else text + filler
            )
        cut_text, count, _ = cut_tokens(text, max_tokens, model)
        return cut_text, count
    cut_text, count, _ = cut_tokens(text, max(1, full * 2 // 3), model)
    return cut_text, count


def _generic_object(facts: TextFacts, rng: random.Random, model: str) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    if facts.names:
        obj["name"] = facts.names[0]
    if facts.emails:
        obj["email"] = facts.emails[0]
    if facts.dates:
        obj["date"] = facts.dates[0]
    if facts.amounts:
        obj["amount"], obj["currency"] = facts.amounts[0]
    obj["summary"] = facts.summary or prose(rng, 12, model)
    return obj


def _record_text(messages: list[dict[str, Any]]) -> str:
    """Text of the user messages before the first assistant message (the record itself)."""
    parts: list[str] = []
    for message in messages:
        if message["role"] == "assistant":
            break
        if message["role"] == "user":
            parts.append(_text(message.get("content")))
    return "\n".join(parts)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _schema_in_system(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    decoder = json.JSONDecoder()
    for message in messages:
        if message["role"] not in INSTRUCTION_ROLES:
            continue
        text = _text(message.get("content"))
        if '"properties"' not in text:
            continue
        start, tries = text.find("{"), 0
        while start >= 0 and tries < _MAX_SCAN:
            tries += 1
            try:
                value, _ = decoder.raw_decode(text, start)
            except ValueError:
                value = None
            if isinstance(value, dict) and isinstance(value.get("properties"), dict):
                return value
            start = text.find("{", start + 1)
    return None
