"""Azure OpenAI's ways in: deployment paths, the `api-key` header and expiring Entra ID tokens.

Azure serves chat at `/openai/deployments/{deployment}/chat/completions?api-version=...`
and takes either a resource key (`api-key: ...`) or a Microsoft Entra ID bearer token
(`Authorization: Bearer ...`) that expires after about an hour. The simulator answers
the deployment path like `/v1/chat/completions` (the body's `model` picks the model),
accepts its `api_keys` in `api-key` too, and, with `expiring_tokens=True`, accepts the
bearer tokens `issue_token` makes until their expiry, then answers 401 like Azure does.
A token carries its own expiry, so a test's token provider decides how long they live.
The simulator also issues such tokens as an App Service managed identity endpoint does
(`MANAGED_IDENTITY_PATH`, each living `token_lifetime_s`), so that azure-identity's own
`ManagedIdentityCredential` gets them (`IDENTITY_ENDPOINT` and `IDENTITY_HEADER` set).

Example:
    >>> token = issue_token(60.0, subject="night")
    >>> token_identity(token)
    'entra:night'
    >>> token_identity(issue_token(-1.0))
    Traceback (most recent call last):
    ...
    prefect_openai_chat.simulator.errors.SimError: 401 Access token has expired or is not yet valid.
    >>> token_identity("sk-simulator") is None
    True
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Mapping
from typing import Any

from starlette.requests import Request

from prefect_openai_chat.simulator import payloads
from prefect_openai_chat.simulator.errors import SimError
from prefect_openai_chat.simulator.responses import BodyResponse

DEPLOYMENT_CHAT_PATH = "/openai/deployments/{deployment}/chat/completions"
MANAGED_IDENTITY_PATH = "/_simulator/managed-identity/token"
TOKEN_PREFIX = "sim-entra."
EXPIRED = "Access token has expired or is not yet valid."


def issue_token(lifetime_s: float, subject: str = "sim", now: float | None = None) -> str:
    """A bearer token the simulator accepts for `lifetime_s` seconds (with `expiring_tokens`).

    `subject` names the identity (letters, digits, `-`, `_`); the rate limits count per subject.
    """
    expires = (time.time() if now is None else now) + lifetime_s
    return f"{TOKEN_PREFIX}{subject}.{expires:.3f}.{os.urandom(6).hex()}"


def token_identity(token: str, now: float | None = None) -> str | None:
    """`entra:<subject>` for a valid simulator token, None for another kind of secret;
    a simulator token past its expiry is a 401 (`SimError`)."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    subject, _, rest = token[len(TOKEN_PREFIX) :].partition(".")
    try:
        expires = float(rest.rpartition(".")[0])
    except ValueError:
        raise SimError(401, "Invalid access token.", code="invalid_token") from None
    if (time.time() if now is None else now) >= expires:
        raise SimError(401, EXPIRED, code="expired_token")
    return f"entra:{subject}"


def azure_key(headers: Mapping[str, str], api_keys: Collection[str]) -> str | None:
    """The Azure `api-key` header's key when it is one of `api_keys`; None without that
    header; a 401 (Azure's wording) for another key."""
    key = headers.get("api-key")
    if key is None:
        return None
    if key not in api_keys:
        raise SimError(
            401,
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to"
            " provide a valid key for an active subscription and use a correct regional API"
            " endpoint for your resource.",
            code="401",
        )
    return key


async def managed_identity_token(request: Request) -> Any:
    """A token for `resource`, as App Service's managed identity endpoint answers (the
    `X-IDENTITY-HEADER` it requires is checked for presence only)."""
    if not request.headers.get("x-identity-header"):
        body = {"error": {"code": "UnauthorizedRequest", "message": "X-IDENTITY-HEADER missing"}}
        return BodyResponse(401, {}, payloads.to_json(body))
    life = request.app.state.sim.settings.token_lifetime_s
    answer = {
        "access_token": issue_token(life, subject="managed-identity"),
        "expires_on": str(int(time.time() + life)),  # whole seconds, as the endpoint says
        "resource": request.query_params.get("resource", ""),
        "token_type": "Bearer",
    }
    return BodyResponse(200, {}, payloads.to_json(answer))
