"""Response bodies and SSE frames, field for field like the real Chat Completions API.

Example:
    >>> usage_body(10, 5)["total_tokens"]
    15
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from prefect_openai_chat.simulator.answers import Answer, Choice
from prefect_openai_chat.simulator.errors import SERVER_ERROR_MESSAGE
from prefect_openai_chat.simulator.text import chunks

DONE = b"data: [DONE]\n\n"


def to_json(value: Any) -> bytes:
    """Compact JSON bytes; all escaped (`\\ud83d`) when a text holds a lone surrogate,
    which UTF-8 cannot encode (a scripted answer holding half an emoji)."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Envelope:
    """The fields every completion or chunk of one request shares."""

    id: str
    created: int
    model: str
    fingerprint: str

    @classmethod
    def new(cls, model: str, fingerprint: str) -> Envelope:
        """A fresh `chatcmpl-...` id, created now."""
        return cls("chatcmpl-" + os.urandom(15).hex()[:29], int(time.time()), model, fingerprint)


def usage_body(prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
    """`usage` with the detail objects the API sends; `cached` of the prompt read from cache."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _message(choice: Choice) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if choice.tool_name else choice.content,
        "refusal": choice.refusal,
        "annotations": [],
    }
    if choice.tool_name:
        message["tool_calls"] = [
            {
                "id": choice.tool_call_id,
                "type": "function",
                "function": {"name": choice.tool_name, "arguments": choice.content or ""},
            }
        ]
    return message


def completion_body(
    env: Envelope, answer: Answer, prompt_tokens: int, cached_tokens: int = 0
) -> dict[str, Any]:
    """The non-streaming `chat.completion` object."""
    completion = answer.completion_tokens
    return {
        "id": env.id,
        "object": "chat.completion",
        "created": env.created,
        "model": env.model,
        "choices": [
            {"index": i, "message": _message(c), "logprobs": None, "finish_reason": c.finish_reason}
            for i, c in enumerate(answer.choices)
        ],
        "usage": usage_body(prompt_tokens, completion, cached_tokens),
        "service_tier": "default",
        "system_fingerprint": env.fingerprint,
    }


class ChunkWriter:
    """Builds the `data:` frames of one stream."""

    def __init__(self, env: Envelope, include_usage: bool) -> None:
        self.env = env
        self.include_usage = include_usage

    def frame(self, choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        """One SSE frame holding a `chat.completion.chunk`."""
        chunk: dict[str, Any] = {
            "id": self.env.id,
            "object": "chat.completion.chunk",
            "created": self.env.created,
            "model": self.env.model,
            "service_tier": "default",
            "system_fingerprint": self.env.fingerprint,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = usage
        return b"data: " + to_json(chunk) + b"\n\n"

    def delta(self, index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        """A frame with one choice's delta."""
        return self.frame(
            [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]
        )

    def choice_frames(self, index: int, choice: Choice) -> tuple[bytes, list[bytes], bytes]:
        """(first frame with the role, content frames, last frame with finish_reason)."""
        if choice.tool_name:
            first = self.delta(
                index,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": choice.tool_call_id,
                            "type": "function",
                            "function": {"name": choice.tool_name, "arguments": ""},
                        }
                    ],
                    "refusal": None,
                },
            )
            body = [
                self.delta(index, {"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
                for part in chunks(choice.content or "")
            ]
        elif choice.refusal is not None:
            first = self.delta(index, {"role": "assistant", "content": None, "refusal": ""})
            body = [self.delta(index, {"refusal": part}) for part in chunks(choice.refusal)]
        else:
            first = self.delta(index, {"role": "assistant", "content": "", "refusal": None})
            body = [self.delta(index, {"content": part}) for part in chunks(choice.content or "")]
        return first, body, self.delta(index, {}, choice.finish_reason)

    def usage_frame(self, prompt: int, completion: int, cached: int = 0) -> bytes:
        """The final `choices: []` frame carrying usage."""
        return self.frame([], usage_body(prompt, completion, cached))


def error_frame() -> bytes:
    """A mid-stream error event, as the API sends when generation fails."""
    body = {
        "error": {
            "message": SERVER_ERROR_MESSAGE,
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    return b"data: " + to_json(body) + b"\n\n"


def models_body(names: list[str]) -> dict[str, Any]:
    """`GET /v1/models`."""
    return {"object": "list", "data": [model_entry(n) for n in names]}


def model_entry(name: str) -> dict[str, Any]:
    """One model object."""
    return {"id": name, "object": "model", "created": 1_715_367_049, "owned_by": "system"}
