"""A ChatModel for tests: real settings, with an in-call tier that never sleeps for long."""

from __future__ import annotations

from typing import Any

from prefect_openai_chat import ChatModel, OpenAICredentials
from prefect_openai_chat.blocks.sections import nest_flat_fields

MODEL = "gpt-4o-mini-2024-07-18"


def fast_model(base_url: str, api_key: str, **fields: Any) -> ChatModel:
    """A ChatModel whose in-call tier never sleeps for long, with any field overridden.

    Settings of the sections may be given by their flat names (`max_attempts=2`,
    `circuit_failures=3`; the table is `blocks/sections.py::FLAT_FIELDS`) or as sections.
    """
    settings: dict[str, Any] = {
        "model": MODEL,
        "read_timeout_s": 5.0,
        "connect_timeout_s": 2.0,
        "backoff_base_s": 0.0,
        "backoff_cap_s": 0.01,
        "retry_after_cap_s": 0.05,
        "circuit_failures": 1000,
        "outage_patience_s": 0.0,  # an open circuit fails at once: waiting has its own tests
        "retry_budget_ratio": 1.0,
        **fields,
    }
    credentials = OpenAICredentials(base_url=base_url, api_key=api_key)
    return ChatModel(credentials=credentials, **nest_flat_fields(settings))
