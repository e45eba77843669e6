"""The simulator's control plane, `/_simulator/*`: what a test reads and changes while it runs.

`stats` (the counters), `settings` (as configured), `reset` (counters and limits back to
zero) and `configure` (new settings, live; a bad one is a 400 with the reason).

Example:
    >>> [route.path for route in admin_routes()]
    ['/_simulator/stats', '/_simulator/settings', '/_simulator/reset', '/_simulator/configure']
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.routing import Route

from prefect_openai_chat.simulator import payloads
from prefect_openai_chat.simulator.responses import BodyResponse


def admin_routes() -> list[Route]:
    """The `/_simulator/*` routes; the app's live state is `request.app.state.sim`."""
    return [
        Route("/_simulator/stats", _stats, methods=["GET"]),
        Route("/_simulator/settings", _settings, methods=["GET"]),
        Route("/_simulator/reset", _reset, methods=["POST"]),
        Route("/_simulator/configure", _configure, methods=["POST"]),
    ]


async def _stats(request: Request) -> Any:
    stats = request.app.state.sim.stats()
    return BodyResponse(200, {}, stats.model_dump_json().encode())


async def _settings(request: Request) -> Any:
    return BodyResponse(200, {}, request.app.state.sim.settings.model_dump_json().encode())


async def _reset(request: Request) -> Any:
    request.app.state.sim.reset()
    return BodyResponse(200, {}, b'{"ok":true}')


async def _configure(request: Request) -> Any:
    try:
        overrides = json.loads(await request.body() or b"{}")
        if not isinstance(overrides, dict):
            raise ValueError("the body must be a JSON object of settings")
        settings = request.app.state.sim.configure(**overrides)
    except (ValueError, ValidationError, TypeError) as exc:
        return BodyResponse(400, {}, payloads.to_json({"error": {"message": str(exc)}}))
    return BodyResponse(200, {}, settings.model_dump_json().encode())
