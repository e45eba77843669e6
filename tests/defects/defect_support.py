"""Helpers for the issue #10 defect tests: a fast ChatModel on a simulator, fresh registries,
and one task run inside a real flow whose state and outcome the test reads back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from model_support import MODEL, fast_model
from prefect import flow

from prefect_openai_chat import ChatModel
from prefect_openai_chat.simulator import Simulator

MESSAGES = [{"role": "user", "content": "Say hi."}]
__all__ = ["MESSAGES", "MODEL", "fault", "run_task", "sim_model"]


def fault(name: str) -> dict[str, Any]:
    """Request overrides that force a simulator fault on every attempt."""
    return {"extra_headers": {"x-simulator-fault": name}}


def sim_model(sim: Simulator, api_key: str | None = None, **fields: Any) -> ChatModel:
    """`fast_model` on `sim`, with its key unless another is given."""
    return fast_model(sim.base_url, api_key or sim.api_key, **fields)


def run_task(task: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, Any]:
    """Run `task(*args, **kwargs)` in a flow; return (its final state's message, its result
    or the exception it raised)."""

    @flow
    def one_run() -> dict[str, Any]:
        state = task(*args, **kwargs, return_state=True)
        return {"message": state.message or "", "outcome": state.result(raise_on_failure=False)}

    out = one_run()
    return out["message"], out["outcome"]
