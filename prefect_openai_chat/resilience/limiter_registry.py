"""The process's rate limiters: one per key and settings, local or shared through Redis.

`limiter.py` (the buckets) and `limiter_redis.py` (the same buckets in Redis) never import
each other's way back: this module is the one place that chooses between them.

Example:
    >>> from prefect_openai_chat.resilience.limiter_registry import get_rate_limiter
    >>> get_rate_limiter("doc", rpm=60) is get_rate_limiter("doc", rpm=60)
    True
    >>> get_rate_limiter("doc", rpm=60) is get_rate_limiter("doc", rpm=30)
    False
"""

from __future__ import annotations

from prefect_openai_chat.resilience.limiter import Limiter, RateLimiter
from prefect_openai_chat.resilience.limiter_redis import SharedRateLimiter
from prefect_openai_chat.resilience.registry import Registry

_registry: Registry[Limiter] = Registry("rate limiters")


def get_rate_limiter(
    key: str, rpm: float | None = None, tpm: float | None = None, redis_url: str | None = None
) -> Limiter:
    """The process-wide limiter for `key` (endpoint, account, model) and these caps, made on
    first use.

    Callers with the same key, caps and Redis share one limiter. A block with other caps has
    its own (no block changes another's caps); each still aligns its buckets with what the
    server's headers say is left, which counts what the others spent. With `redis_url` the
    buckets are shared with every process that uses the same Redis, key and caps.
    """

    def build() -> Limiter:
        if redis_url:
            return SharedRateLimiter(key, redis_url, rpm, tpm)
        return RateLimiter(rpm, tpm)

    return _registry.get((key, rpm, tpm, redis_url), build)
