"""The state a process keeps between calls, and the one way to reset it.

Circuit guards, retry budgets and rate limiters (bounded registries in `resilience/`),
the outages seen (`resilience/retrying.py`) and the client cache (`chat/clients.py`)
live as long as the process; docs/architecture.md lists them. Reset them between
tests, or after changing a block in a long-lived process (a notebook).

Example:
    >>> from prefect_openai_chat import reset_process_state
    >>> reset_process_state()
"""

from __future__ import annotations

import sys

from prefect_openai_chat.chat.clients import CLIENTS
from prefect_openai_chat.resilience.registry import reset_registries
from prefect_openai_chat.resilience.retrying import outages


def reset_process_state() -> None:
    """Forget every circuit guard, retry budget, rate limiter, outage seen, cached client and
    Entra ID token source."""
    reset_registries()
    entra = sys.modules.get("prefect_openai_chat.blocks.entra")  # loaded with the blocks
    if entra is not None:
        entra.clear_token_sources()
    outages.clear()
    CLIENTS.clear()
