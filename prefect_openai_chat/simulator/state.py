"""The live state of one simulator: settings, counters, fault draws, buckets, clocks.

Everything here is touched from the server's event loop only; the runner hops
onto that loop to read stats, reset or configure.

Example:
    >>> state = SimulatorState(SimulatorSettings(seed=3))
    >>> state.configure(rpm=10).rpm
    10
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from prefect_openai_chat.simulator.batches import BatchStore
from prefect_openai_chat.simulator.faults import FaultPicker
from prefect_openai_chat.simulator.prompt_cache import PromptCache
from prefect_openai_chat.simulator.ratelimit import RateLimiter
from prefect_openai_chat.simulator.request_log import RequestLog
from prefect_openai_chat.simulator.settings import SimulatorSettings
from prefect_openai_chat.simulator.stats import Counters, SimulatorStats

_LIMITER_FIELDS = ("rpm", "tpm", "time_scale")


class SimulatorState:
    """Settings plus everything a reset clears."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.counters = Counters()
        self.picker = FaultPicker(settings.seed)
        self.limiter = self._new_limiter()
        self.outage_clock = time.monotonic()
        self.outage_base = 0  # request index at which the outage windows' count starts
        self.api_keys = frozenset(settings.api_keys)
        self.prompt_cache = PromptCache(settings.prompt_cache_ttl_s)
        self.batches = BatchStore()  # files and batches outlive `reset()`, as on an account
        self.batch_route_faults = deque(settings.batch_route_script)
        # set by `create_app`: answer one batch line; count a batch line's prompt tokens
        self.answer_batch_line: Callable[[str, dict[str, Any]], tuple[int, dict[str, Any], int]]
        self.batch_prompt_tokens: Callable[[dict[str, Any]], int]
        self.request_log = RequestLog(settings.request_log) if settings.request_log else None

    def _new_limiter(self) -> RateLimiter:
        s = self.settings
        return RateLimiter(s.rpm, s.tpm, s.time_scale)

    def reset(self) -> None:
        """Zero counters and buckets; rewind the script, the fault draws and the outage clock."""
        in_flight = self.counters.in_flight
        self.counters = Counters()
        self.counters.in_flight = in_flight
        self.counters.concurrent_peak = in_flight
        self.picker = FaultPicker(self.settings.seed)
        self.limiter = self._new_limiter()
        self.outage_clock = time.monotonic()
        self.outage_base = 0
        self.prompt_cache = PromptCache(self.settings.prompt_cache_ttl_s)

    def configure(self, **overrides: Any) -> SimulatorSettings:
        """Apply `overrides` now; new `outages` are timed and counted from this moment.

        New `rpm`/`tpm`/`time_scale` rescale the buckets at once (no restart): what each
        key has used stays used, and the headers report the new limits.
        """
        self.settings = self.settings.with_overrides(**overrides)
        self.api_keys = frozenset(self.settings.api_keys)
        if "seed" in overrides:
            self.picker = FaultPicker(self.settings.seed)
        if any(name in overrides for name in _LIMITER_FIELDS):
            s = self.settings
            self.limiter.reconfigure(s.rpm, s.tpm, s.time_scale)
        if "prompt_cache_ttl_s" in overrides:
            self.prompt_cache.ttl_s = self.settings.prompt_cache_ttl_s
        if "outages" in overrides:
            self.outage_clock = time.monotonic()
            self.outage_base = self.counters.requests
        if "batch_route_script" in overrides:
            self.batch_route_faults = deque(self.settings.batch_route_script)
        if "request_log" in overrides:
            if self.request_log is not None:
                self.request_log.close()
            path = self.settings.request_log
            self.request_log = RequestLog(path) if path else None
        return self.settings

    def outage_mode(self, index: int) -> str | None:
        """`refuse` or `503` when request `index` falls in an outage window, else None."""
        outages = self.settings.outages
        if not outages:
            return None
        elapsed = time.monotonic() - self.outage_clock
        for window in outages:
            if window.active(elapsed, index - self.outage_base):
                return window.mode
        return None

    def stats(self) -> SimulatorStats:
        """A snapshot of the counters (and of the files the account holds)."""
        return self.counters.snapshot().model_copy(update={"files_stored": len(self.batches.files)})
