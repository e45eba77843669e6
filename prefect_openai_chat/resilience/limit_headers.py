"""The `x-ratelimit-*` headers, and what a run of them says about a bucket's capacity and rate.

`read_limits` takes the readings out of one response's headers; `LearnedBucket` turns
the readings of many responses into a capacity and a refill rate that is never above the
server's. The rate limiter (`limiter.py`) paces calls by them.

Example:
    >>> from prefect_openai_chat.resilience.limit_headers import (
    ...     LearnedBucket, LimitReading, parse_duration)
    >>> parse_duration("6m0s"), parse_duration("12ms")
    (360.0, 0.012)
    >>> bucket = LearnedBucket()
    >>> bucket.observe(LimitReading(limit=50, remaining=45, reset_s=0.08))
    >>> round(bucket.rate, 1)  # 4 spent in 80.5 ms at the least: never above the server's 50/s
    49.7
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["requests", "tokens"]
KINDS: tuple[Kind, ...] = ("requests", "tokens")
MAX_RESET_S = 86_400.0  # the longest bucket reset believed: a day

# A number starts only where no digit or point is before it: else a long run of digits
# without a unit is scanned again from each of its digits (quadratic in the value's size).
_DURATION = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float | None:
    """Seconds in a rate-limit reset value such as `"1s"`, `"6m0s"`, `"12ms"` or `"0.5"`.

    None for anything else, and for values past `MAX_RESET_S` (a day) or not finite:
    `"inf"`, `"nan"` or `"99999999h"` would pace the calls to a standstill.

    Example:
        >>> parse_duration("1.5s"), parse_duration("-3"), parse_duration("inf")
        (1.5, 0.0, None)
    """
    text = text.strip()
    try:
        seconds = max(0.0, float(text))
    except ValueError:
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            return None
        seconds = sum(float(n) * _UNIT[u] for n, u in parts)
    return seconds if math.isfinite(seconds) and seconds <= MAX_RESET_S else None


@dataclass(frozen=True)
class LimitReading:
    """What one response said about one bucket.

    Attributes:
        limit: `x-ratelimit-limit-*`: the bucket's capacity.
        remaining: `x-ratelimit-remaining-*`: what is left now.
        reset_s: `x-ratelimit-reset-*`: seconds until the bucket is full again.
    """

    limit: float
    remaining: float
    reset_s: float | None

    @property
    def rate(self) -> float | None:
        """Units refilled per second, when the reading shows a partly spent bucket."""
        spent = self.limit - self.remaining
        if spent >= 1 and self.reset_s:
            return spent / self.reset_s
        return None


def read_limits(headers: Mapping[str, str] | Any) -> dict[Kind, LimitReading]:
    """The `x-ratelimit-*` readings in `headers`, by kind; malformed values are skipped.

    Example:
        >>> read_limits({"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "750",
        ...              "x-ratelimit-reset-tokens": "15s"})["tokens"].rate
        16.666666666666668
    """
    readings: dict[Kind, LimitReading] = {}
    if headers is None:
        return readings
    headers = _rate_limit_headers(headers)
    for kind in KINDS:
        limit, remaining = (headers.get(f"x-ratelimit-{w}-{kind}") for w in ("limit", "remaining"))
        if limit is None or remaining is None:
            continue
        try:
            cap, left = float(limit), float(remaining)
        except (TypeError, ValueError):
            continue
        if not (math.isfinite(cap) and math.isfinite(left)) or cap <= 0 or left < 0:
            continue
        reset = parse_duration(str(headers.get(f"x-ratelimit-reset-{kind}") or ""))
        readings[kind] = LimitReading(cap, min(left, cap), reset)
    return readings


def _rate_limit_headers(headers: Mapping[str, str] | Any) -> Mapping[str, str] | Any:
    """`httpx.Headers` as a dict of its `x-ratelimit-*` entries, read in one pass over the
    raw pairs (each `Headers.get` scans and decodes them all); any other mapping as it is."""
    raw = getattr(headers, "raw", None)
    if not isinstance(raw, list):
        return headers
    return {
        key.decode("latin-1").lower(): value.decode("latin-1")
        for key, value in raw
        if key[:12].lower() == b"x-ratelimit-"
    }


class LearnedBucket:
    """A bucket's capacity and refill rate as the headers tell them (re-learned on change).

    Servers round `remaining` down and `reset` to the millisecond (to the second past a
    minute), so a reading that shows `d` units spent and the bucket full again in `reset`
    seconds only bounds the rate: `(d - 1) / (reset + e) < rate <= d / (reset - e)`. The
    estimate is the tightest lower bound of the last readings: never above what the server
    allows, so calls paced by it never outrun the server's bucket (an upper bound a few
    percent high drains it and every worker meets 429s). The lower bounds close in on the
    rate as readings catch the bucket at other levels; a full bucket's readings (one unit
    spent) bound nothing from below and leave the estimate as it is. Until a reading
    bounds the rate from below (the first answer shows one unit spent), the tightest
    upper bound stands in. A reading of `1ms` bounds nothing from above.
    """

    SAMPLES = 32

    def __init__(self) -> None:
        self.capacity: float | None = None
        self.rate: float | None = None
        self._lower: deque[float] = deque(maxlen=self.SAMPLES)
        self._upper: deque[float] = deque(maxlen=self.SAMPLES)

    def observe(self, reading: LimitReading) -> None:
        if reading.limit != self.capacity:  # first reading, or the limit changed: start over
            self.capacity, self.rate = reading.limit, None
            self._lower.clear()
            self._upper.clear()
        reset, spent = reading.reset_s, reading.limit - reading.remaining
        if not reset or spent < 1:
            return
        rounding = 0.0005 if reset < 60 else 0.5
        if spent >= 2:  # one unit spent bounds nothing from below
            self._lower.append((spent - 1) / (reset + rounding))
        if reset > rounding * 2:
            self._upper.append(spent / (reset - rounding))
        self.rate = max(self._lower) if self._lower else min(self._upper, default=self.rate)
        if self.rate:  # no bucket takes more than MAX_RESET_S to fill: no wait of weeks
            self.rate = max(self.rate, reading.limit / MAX_RESET_S)
