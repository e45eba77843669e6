"""Helpers for the resilience tests of the task layer: fresh registries, a ChatModel with
fast retry settings, task run counts as the Prefect engine counted them, and a tiny HTTP server
for the statuses the simulator does not produce (403, 422)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from uuid import UUID

from model_support import MODEL, fast_model
from prefect.client.schemas.objects import State, TaskRun
from registry_support import clear_resilience
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from prefect_openai_chat import ChatModel
from prefect_openai_chat.resilience import RetryEvent
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.simulator.server import ServerThread

MESSAGES = [{"role": "user", "content": "Say hi."}]
T = TypeVar("T")
__all__ = ["MODEL", "clear_resilience", "fast_model"]  # re-exported for this folder


def sim_model(sim: Simulator, **fields: Any) -> ChatModel:
    """`fast_model` for a simulator."""
    return fast_model(sim.base_url, sim.api_key, **fields)


def unique_name(prefix: str) -> str:
    """A block name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


_RUN_COUNTS: dict[UUID, int] = {}  # task run id -> runs, as the engine counted them


def _count_runs(task: Any, task_run: TaskRun, state: State) -> None:
    """A final-state hook: the engine's own `run_count`, read where the run ends, in this
    process (a test does not wait for the run to reach the API as events: on a loaded
    machine that took longer than any fixed wait)."""
    _RUN_COUNTS[task_run.id] = task_run.run_count


def task_run_count(task_run_id: UUID) -> int:
    """How many times Prefect ran the task of `task_run_id` (a task made by `counted`)."""
    if task_run_id not in _RUN_COUNTS:
        raise AssertionError(
            f"task run {task_run_id} ended without a count: make its task with counted(task)"
        )
    return _RUN_COUNTS[task_run_id]


def counted(task: T) -> T:
    """`task` with zero task-retry delay whose final run count `task_run_count` reads."""
    return task.with_options(  # type: ignore[attr-defined, no-any-return]
        retry_delay_seconds=0, on_completion=[_count_runs], on_failure=[_count_runs]
    )


class RetryRecorder:
    """A `Protection.on_retry` hook: keeps every in-call retry event."""

    def __init__(self) -> None:
        self.events: list[RetryEvent] = []

    def __call__(self, event: RetryEvent) -> None:
        self.events.append(event)

    @property
    def delays(self) -> list[float]:
        return [e.delay_s for e in self.events]


class StatusServer:
    """An OpenAI-shaped endpoint that answers every chat request with one error status.

    The simulator has no fault for 403 and 422; this serves them over real HTTP so that
    the real `openai` client raises its real exceptions.
    """

    BODIES: dict[int, dict[str, Any]] = {
        403: {
            "message": "Country, region, or territory not supported",
            "type": "request_forbidden",
            "code": "unsupported_country_region_territory",
        },
        422: {"message": "Unprocessable entity", "type": "invalid_request_error", "code": None},
    }

    def __init__(self, status: int) -> None:
        self.status = status
        self.requests = 0
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])
        self._thread = ServerThread(app)

    async def _chat(self, request: Request) -> Response:
        await request.body()
        with self._lock:
            self.requests += 1
        body = {"error": {**self.BODIES[self.status], "param": None}}
        return Response(json.dumps(body), self.status, media_type="application/json")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._thread.port}/v1"

    @contextmanager
    def running(self) -> Iterator[StatusServer]:
        self._thread.start()
        try:
            yield self
        finally:
            self._thread.stop()
