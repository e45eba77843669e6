"""Prompt caching like the real API: a prefix of at least 1,024 tokens seen recently is
reported as `usage.prompt_tokens_details.cached_tokens`, in steps of 128 tokens.

The prompt is read as the API reads it, tools and response format first, then the
messages in order; every 128-token boundary from 1,024 on is remembered (by a hash of
the tokens before it) per API key and model for `ttl_s` seconds after its last use.

Example:
    >>> cache = PromptCache(ttl_s=60.0)
    >>> tokens = list(range(1500))
    >>> cache.lookup_and_store("key|model", tokens), cache.lookup_and_store("key|model", tokens)
    (0, 1408)
    >>> cache.lookup_and_store("key|model", tokens[:1100] + [7] * 400)
    1024
"""

from __future__ import annotations

import hashlib
import json
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

MIN_CACHED_TOKENS = 1024
CACHE_STEP = 128
_CAPACITY = 200_000  # remembered prefixes; the oldest are forgotten first


class PromptCache:
    """Prefix hashes seen recently, per namespace (API key and model)."""

    def __init__(self, ttl_s: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def lookup_and_store(self, namespace: str, tokens: Sequence[int]) -> int:
        """Tokens of `tokens` read from cache (a multiple of 128, 0 below 1,024); remember it."""
        if len(tokens) < MIN_CACHED_TOKENS:
            return 0
        now = self._clock()
        digest = hashlib.blake2b(namespace.encode(), digest_size=16)
        data = array("I", tokens).tobytes()
        cached, previous = 0, 0
        for boundary in range(MIN_CACHED_TOKENS, len(tokens) + 1, CACHE_STEP):
            digest.update(data[previous * 4 : boundary * 4])
            previous = boundary
            key = digest.copy().digest()
            seen = self._seen.get(key)
            fresh = seen is not None and now - seen <= self.ttl_s
            if fresh and (boundary == MIN_CACHED_TOKENS or cached == boundary - CACHE_STEP):
                cached = boundary
            self._seen[key] = now
            self._seen.move_to_end(key)
        while len(self._seen) > _CAPACITY:
            self._seen.popitem(last=False)
        return cached


def prompt_tokens_for_cache(
    messages: Sequence[dict[str, Any]],
    tools: Any,
    response_format: Any,
    encode: Callable[[str], list[int]],
) -> list[int]:
    """The prompt's tokens in the order the API caches them: tools, format, then messages.

    Example:
        >>> prompt_tokens_for_cache([{"role": "user", "content": "ab"}], None, None, list)
        ['u', 's', 'e', 'r', '\\n', 'a', 'b', '\\n']
    """
    parts: list[str] = []
    if tools:
        parts.append(json.dumps(tools, sort_keys=True))
    if response_format:
        parts.append(json.dumps(response_format, sort_keys=True))
    for message in messages:
        content = message.get("content")
        if not isinstance(content, str):
            content = json.dumps(content, sort_keys=True)
        parts.append(f"{message.get('role')}\n{content}\n")
    tokens: list[int] = []
    for part in parts:
        tokens.extend(encode(part))
    return tokens
