"""Per-key request and token buckets, charged like the real API, and the x-ratelimit-* headers.

A bucket holds `limit` units and refills continuously at `limit` per (scaled)
minute; `time_scale=60` makes that minute last one real second. `reset-*` is the
real time until a bucket is full again, so `(limit - remaining) / reset` is its
refill rate. `reconfigure` changes the limits of a running limiter: what each key
has used stays used.

Example:
    >>> from prefect_openai_chat.simulator.ratelimit import format_duration
    >>> format_duration(360.0), format_duration(1.0), format_duration(0.012)
    ('6m0s', '1s', '12ms')
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

# What an unlimited key reports (the API always sends the headers).
NOMINAL_RPM = 10_000
NOMINAL_TPM = 30_000_000


def format_duration(seconds: float) -> str:
    """The API's duration format: `12ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + f"{minutes}m{secs}s"


class Bucket:
    """A token bucket of `limit` per minute, refilled continuously; `level` may go fractional."""

    def __init__(self, limit: int, time_scale: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.rate = limit / 60.0 * time_scale  # units per real second
        self._clock = clock
        self.level = float(limit)
        self._at = clock()

    def refill(self) -> None:
        """Bring `level` up to date."""
        now = self._clock()
        self.level = min(float(self.limit), self.level + (now - self._at) * self.rate)
        self._at = now

    def wait_for(self, amount: float) -> float:
        """Real seconds until `amount` units are available (0 if they are now)."""
        missing = amount - self.level
        return max(0.0, missing / self.rate)

    def reset_in(self) -> float:
        """Real seconds until the bucket is full again."""
        return max(0.0, (self.limit - self.level) / self.rate)

    def rescaled(self, limit: int, time_scale: float) -> Bucket:
        """A bucket of the new `limit` and `time_scale` in which what was used stays used."""
        self.refill()
        bucket = Bucket(limit, time_scale, self._clock)
        bucket.level = max(0.0, limit - (self.limit - self.level))
        return bucket


@dataclass
class Verdict:
    """Outcome of a rate-limit check: headers for the answer, and a 429 reason if refused."""

    headers: dict[str, str]
    refused: str | None = None  # "requests" | "tokens" | "too-large"
    retry_after_s: float = 0.0
    used: int = 0
    limit: int = 0


class RateLimiter:
    """Buckets per API key; `check` charges one request and `tokens` tokens, or refuses."""

    def __init__(
        self,
        rpm: int | None,
        tpm: int | None,
        time_scale: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rpm, self.tpm, self.time_scale = rpm, tpm, time_scale
        self._clock = clock
        self._buckets: dict[str, tuple[Bucket | None, Bucket | None]] = {}

    def _for(self, key: str) -> tuple[Bucket | None, Bucket | None]:
        pair = self._buckets.get(key)
        if pair is None:
            pair = (
                Bucket(self.rpm, self.time_scale, self._clock) if self.rpm else None,
                Bucket(self.tpm, self.time_scale, self._clock) if self.tpm else None,
            )
            self._buckets[key] = pair
        return pair

    def reconfigure(self, rpm: int | None, tpm: int | None, time_scale: float) -> None:
        """New limits from now on; each key's used requests and tokens carry over."""
        self.rpm, self.tpm, self.time_scale = rpm, tpm, time_scale
        for key, (requests, tokens) in list(self._buckets.items()):
            self._buckets[key] = (
                _rescale(requests, rpm, time_scale, self._clock),
                _rescale(tokens, tpm, time_scale, self._clock),
            )

    def check(self, key: str, tokens: int) -> Verdict:
        """Charge a request of `tokens` tokens to `key`, or refuse it with the reason."""
        requests, token_bucket = self._for(key)
        for bucket in (requests, token_bucket):
            if bucket is not None:
                bucket.refill()
        if token_bucket is not None and tokens > token_bucket.limit:
            return Verdict(self.headers(key), "too-large", 0.0, tokens, token_bucket.limit)
        if requests is not None and requests.level < 1:
            wait = requests.wait_for(1)
            return Verdict(self.headers(key), "requests", wait, requests.limit, requests.limit)
        if token_bucket is not None and token_bucket.level < tokens:
            wait = token_bucket.wait_for(tokens)
            used = token_bucket.limit - math.floor(token_bucket.level)
            return Verdict(self.headers(key), "tokens", wait, used, token_bucket.limit)
        if requests is not None:
            requests.level -= 1
        if token_bucket is not None:
            token_bucket.level -= tokens
        return Verdict(self.headers(key))

    def headers(self, key: str) -> dict[str, str]:
        """The six x-ratelimit-* headers for `key`, as they stand now (full for a new key)."""
        requests, tokens = self._for(key)
        for bucket in (requests, tokens):
            if bucket is not None:
                bucket.refill()
        if requests is None:
            req = (NOMINAL_RPM, NOMINAL_RPM, "0s")
        else:
            req = (
                requests.limit,
                max(0, math.floor(requests.level)),
                format_duration(requests.reset_in()),
            )
        if tokens is None:
            tok = (NOMINAL_TPM, NOMINAL_TPM, "0s")
        else:
            tok = (
                tokens.limit,
                max(0, math.floor(tokens.level)),
                format_duration(tokens.reset_in()),
            )
        return {
            "x-ratelimit-limit-requests": str(req[0]),
            "x-ratelimit-limit-tokens": str(tok[0]),
            "x-ratelimit-remaining-requests": str(req[1]),
            "x-ratelimit-remaining-tokens": str(tok[1]),
            "x-ratelimit-reset-requests": req[2],
            "x-ratelimit-reset-tokens": tok[2],
        }


def _rescale(
    bucket: Bucket | None, limit: int | None, time_scale: float, clock: Callable[[], float]
) -> Bucket | None:
    if not limit:
        return None
    if bucket is None:
        return Bucket(limit, time_scale, clock)
    return bucket.rescaled(limit, time_scale)
