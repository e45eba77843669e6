"""An OpenAI-compatible Chat Completions server with faults, rate limits and streaming.

Use it to test pipelines offline: every fault a real deployment meets (429s, 5xx,
resets, hangs, stalled or cut streams, sloppy JSON, refusals, outages) can be
switched on by probability, by script, by outage window or per request with the
`x-simulator-fault` header, deterministically by seed.

Example:
    >>> from prefect_openai_chat.simulator import Simulator
    >>> with Simulator(profile="flaky", seed=7) as sim:
    ...     sim.base_url.endswith("/v1")
    True
"""

from prefect_openai_chat.simulator.app import create_app
from prefect_openai_chat.simulator.faults import FAULT_DOCS, FAULTS
from prefect_openai_chat.simulator.profiles import PROFILE_DOCS, PROFILES, settings_for
from prefect_openai_chat.simulator.runner import Simulator
from prefect_openai_chat.simulator.settings import OutageWindow, SimulatorSettings
from prefect_openai_chat.simulator.stats import SimulatorStats

__all__ = [
    "FAULTS",
    "FAULT_DOCS",
    "PROFILES",
    "PROFILE_DOCS",
    "OutageWindow",
    "Simulator",
    "SimulatorSettings",
    "SimulatorStats",
    "create_app",
    "settings_for",
]
