"""The cache key of one extraction: what determines the answer, and nothing else.

The key is a sha256 over the record content (text or messages), the schema's
JSON schema and name, the instructions, the concrete mode, the model, the
generation parameters and the version of the plugin's prompt texts. Clients,
credentials, headers and timeouts never take part: a parameter whose name says it
is one of those is left out, and a value that is not plain JSON is an error
rather than something silently hashed by identity.

Example:
    >>> from pydantic import BaseModel
    >>> class City(BaseModel):
    ...     name: str
    >>> params = {"temperature": 0}
    >>> a = extraction_cache_key(City, "Oslo", None, "auto", "gpt-4o-mini", params)
    >>> b = extraction_cache_key(City, "Oslo", None, "json_schema", "gpt-4o-mini", params)
    >>> a == b, len(a)
    (True, 64)
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction.prompts import PROMPT_VERSION, TextOrMessages, resolve_mode
from prefect_openai_chat.extraction.schema import ensure_model, schema_spec

# request settings that never change what the model answers, or must never be hashed
EXCLUDED_PARAMS = frozenset(
    {
        "api_key",
        "azure_ad_token",
        "azure_ad_token_provider",
        "organization",
        "project",
        "client",
        "http_client",
        "base_url",
        "azure_endpoint",
        "api_version",
        "extra_headers",
        "extra_query",
        "headers",
        "default_headers",
        "timeout",
        "max_retries",
        "credentials",
        "user",
        "stream",
        "stream_options",
        "metadata",
        "store",
    }
)
_SECRET_HINTS = ("key", "secret", "password", "credential", "authorization")


def extraction_cache_key(
    schema: type[BaseModel],
    messages_or_text: TextOrMessages,
    instructions: str | None,
    mode: str,
    model: str,
    generation_params: Mapping[str, Any] | None = None,
) -> str:
    """A hex sha256 naming one extraction's answer; equal inputs give equal keys.

    Args:
        schema: The pydantic model (its JSON schema and name are hashed).
        messages_or_text: The record's text or messages.
        instructions: The extraction instructions, or None.
        mode: The requested mode; "auto" is resolved for `model` first.
        model: The model name.
        generation_params: temperature, seed, max_completion_tokens, ... (secrets refused).
    """
    model_cls = ensure_model(schema)
    params = _dumps(_params(generation_params or {}))
    rest = _after_input(model_cls, instructions, resolve_mode(mode, model), model, params)
    text = messages_or_text if isinstance(messages_or_text, str) else list(messages_or_text)
    try:
        head = _dumps(text)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"cannot compute a cache key: the record or its messages are not plain JSON ({exc})"
        ) from exc
    # The blob is the sorted JSON of {"input": ..., "instructions": ..., ...}: "input" sorts
    # first, and what follows it is the same for every record of a spec, made once.
    return hashlib.sha256(f'{{"input":{head}{rest}'.encode()).hexdigest()


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@functools.lru_cache(maxsize=256)  # bounded: its keys hold the schema class
def _after_input(
    model_cls: type[BaseModel], instructions: str | None, mode: str, model: str, params: str
) -> str:
    """The key's JSON after its `input` field: `,"instructions":...,"v":N}`."""
    spec = schema_spec(model_cls)
    record = {
        "v": PROMPT_VERSION,
        "schema_name": spec.name,
        "schema": spec.original,
        "instructions": instructions,
        "mode": mode,
        "model": model,
        "params": json.loads(params),
    }
    return "," + _dumps(record)[1:]


def _params(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in params.items():
        lowered = name.lower()
        if lowered in EXCLUDED_PARAMS or any(h in lowered for h in _SECRET_HINTS):
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"generation parameter {name!r} is not plain JSON ({type(value).__name__}):"
                " pass numbers, strings, lists or dicts; clients and credentials belong in the"
                " ChatModel block, not in the generation parameters"
            ) from exc
        out[name] = value
    return out
