"""Helpers for the issue #10 defect tests: a fast ChatModel on a simulator, fresh registries,
and one task run inside a real flow whose state and outcome the test reads back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import flow

from prefect_openai_chat import ChatModel, OpenAICredentials
from prefect_openai_chat.simulator import Simulator

MODEL = "gpt-4o-mini-2024-07-18"
MESSAGES = [{"role": "user", "content": "Say hi."}]


def fault(name: str) -> dict[str, Any]:
    """Request overrides that force a simulator fault on every attempt."""
    return {"extra_headers": {"x-simulator-fault": name}}


def sim_model(sim: Simulator, api_key: str | None = None, **fields: Any) -> ChatModel:
    """A ChatModel on `sim` whose in-call tier never sleeps for long."""
    settings: dict[str, Any] = {
        "model": MODEL,
        "read_timeout_s": 5.0,
        "connect_timeout_s": 2.0,
        "backoff_base_s": 0.0,
        "backoff_cap_s": 0.01,
        "retry_after_cap_s": 0.05,
        "circuit_failures": 1000,
        "retry_budget_ratio": 1.0,
        **fields,
    }
    credentials = OpenAICredentials(base_url=sim.base_url, api_key=api_key or sim.api_key)
    return ChatModel(credentials=credentials, **settings)


def run_task(task: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, Any]:
    """Run `task(*args, **kwargs)` in a flow; return (its final state's message, its result
    or the exception it raised)."""

    @flow
    def one_run() -> dict[str, Any]:
        state = task(*args, **kwargs, return_state=True)
        return {"message": state.message or "", "outcome": state.result(raise_on_failure=False)}

    out = one_run()
    return out["message"], out["outcome"]
