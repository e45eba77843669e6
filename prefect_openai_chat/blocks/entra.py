"""Microsoft Entra ID for the Azure block: a choice of credential, and tokens that refresh.

Many organisations turn key authentication off on Azure OpenAI. The Azure block then
names a credential (`entra_credential`): `azure-identity` (the `azure` extra) gets its
tokens and `get_bearer_token_provider` hands them to the SDK, which asks for one before
every request; the provider keeps a token until about five minutes before its expiry
and then fetches a new one, so a night longer than a token's hour goes on.

One `TokenSource` per credential choice serves the whole process: every event loop's
client asks the same one (so one token is shared, and fetched once), and a fetch runs
in a worker thread so it never blocks an event loop. The sync credentials are used for
the async client too: `azure.identity.aio` credentials need `aiohttp` and belong to one
event loop, while Prefect runs tasks on several. After a 401 the call drops the cached
token (`TokenSource.refresh`): the next request asks the credential again, and the call
is retried once.

Python code can add credentials of its own (a certificate, a chain) with
`register_entra_credential(name, factory)`; a block then names it.

Example:
    >>> choice = EntraChoice("service_principal", tenant_id="t", client_id="c")
    >>> choice.problem()
    'entra_credential "service_principal" needs client_secret (the app registration\\'s secret)'
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prefect_openai_chat.errors import CredentialsRejectedError, InvalidInputError
from prefect_openai_chat.redaction import redact_text, remember_secret

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

SCOPE = "https://cognitiveservices.azure.com/.default"
INSTALL = "pip install 'prefect-openai-chat[azure]'"
SOURCES_KEPT = 64  # token sources one process keeps (credential choices in use at once)

CREDENTIAL_DOC = (
    "Microsoft Entra ID instead of a key: default (DefaultAzureCredential), managed_identity,"
    " service_principal, workload_identity or azure_cli; needs the azure extra."
)


@dataclass(frozen=True)
class EntraChoice:
    """Which credential gets the tokens, and for which scope (what the block's fields say)."""

    credential: str
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    scope: str = SCOPE

    def fingerprint(self) -> str:
        """Tells choices apart without showing the secret (part of the client cache key)."""
        parts = (self.credential, self.tenant_id, self.client_id, self.client_secret, self.scope)
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]

    def problem(self) -> str | None:
        """What is missing for this choice, or None."""
        if self.credential not in _FACTORIES:
            return (
                f"entra_credential {self.credential!r} is not one of"
                f" {', '.join(sorted(_FACTORIES))} (or one registered with"
                " register_entra_credential)"
            )
        needed = _NEEDS.get(self.credential, ())
        missing = [name for name in needed if not getattr(self, name)]
        if missing:
            what = ", ".join(f"{name} ({_MEANING[name]})" for name in missing)
            return f'entra_credential "{self.credential}" needs {what}'
        if not self.scope.strip():
            return f"token_scope is empty; Azure OpenAI's is {SCOPE}"
        return None


_MEANING = {
    "tenant_id": "the directory (tenant) ID",
    "client_id": "the app registration's application (client) ID",
    "client_secret": "the app registration's secret",
}
_NEEDS: dict[str, tuple[str, ...]] = {
    "service_principal": ("tenant_id", "client_id", "client_secret"),
}


def _default(choice: EntraChoice) -> TokenCredential:
    from azure.identity import DefaultAzureCredential

    options: dict[str, Any] = {}
    if choice.client_id:  # a user-assigned managed identity
        options["managed_identity_client_id"] = choice.client_id
    return DefaultAzureCredential(**options)


def _managed_identity(choice: EntraChoice) -> TokenCredential:
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=choice.client_id)


def _service_principal(choice: EntraChoice) -> TokenCredential:
    from azure.identity import ClientSecretCredential

    assert choice.tenant_id and choice.client_id and choice.client_secret  # checked when made
    return ClientSecretCredential(choice.tenant_id, choice.client_id, choice.client_secret)


def _workload_identity(choice: EntraChoice) -> TokenCredential:
    from azure.identity import WorkloadIdentityCredential

    return WorkloadIdentityCredential(tenant_id=choice.tenant_id, client_id=choice.client_id)


def _azure_cli(choice: EntraChoice) -> TokenCredential:
    from azure.identity import AzureCliCredential

    return AzureCliCredential(tenant_id=choice.tenant_id or "")


_FACTORIES: dict[str, Callable[[EntraChoice], TokenCredential]] = {
    "default": _default,
    "managed_identity": _managed_identity,
    "service_principal": _service_principal,
    "workload_identity": _workload_identity,
    "azure_cli": _azure_cli,
}


def register_entra_credential(name: str, factory: Callable[[EntraChoice], Any]) -> None:
    """Let blocks name `name` as their `entra_credential`: `factory(choice)` returns an
    azure-core `TokenCredential` (anything with `get_token(*scopes)`). Register it in every
    process that loads such a block (a worker too)."""
    _FACTORIES[name] = factory


def check_choice(choice: EntraChoice | None) -> None:
    """`InvalidInputError` saying what to install or set, when `choice` cannot work."""
    if choice is None:
        return
    problem = choice.problem()
    if problem is not None:
        raise InvalidInputError(f"{problem} on the AzureOpenAICredentials block")
    try:
        import azure.identity  # noqa: F401
    except ImportError:
        raise InvalidInputError(
            f"entra_credential {choice.credential!r} needs the azure-identity package: {INSTALL}"
        ) from None
    if choice.client_secret:
        remember_secret(choice.client_secret)


class TokenSource:
    """The bearer tokens of one credential choice, for every client of the process.

    `token()` is the sync client's provider and `atoken()` the async client's (a fetch runs
    in a worker thread). Both go through azure-identity's `get_bearer_token_provider`,
    which keeps the token until it nears its expiry. `refresh()` drops the kept token.
    """

    def __init__(self, credential: Any, scope: str) -> None:
        from azure.identity import get_bearer_token_provider

        self.credential, self.scope = credential, scope
        self._make: Callable[[], Callable[[], str]] = lambda: get_bearer_token_provider(
            credential, scope
        )
        self._lock = threading.Lock()
        self._provider = self._make()
        self._handed = 0  # tokens handed out by the current provider
        self.refreshes = 0  # forced refreshes (after a 401)

    def token(self) -> str:
        """A valid bearer token (fetched when the kept one nears its expiry)."""
        with self._lock:  # one fetch at a time; the others then get its token
            provider = self._provider
            try:
                token = provider()
            except Exception as exc:  # azure-identity's ClientAuthenticationError and kin
                raise CredentialsRejectedError(
                    "Microsoft Entra ID gave no token for Azure OpenAI: "
                    f"{redact_text(str(exc))[:600]}; check the AzureOpenAICredentials block's"
                    " entra_credential settings (and the identity's role on the resource,"
                    " e.g. Cognitive Services OpenAI User)"
                ) from None
            if provider is self._provider:
                self._handed += 1
            return token

    async def atoken(self) -> str:
        """`token()` off the event loop."""
        return await asyncio.to_thread(self.token)

    def refresh(self) -> bool:
        """Drop the kept token (a 401 said it is no longer good): the next request asks the
        credential again. Calls that failed together share one refresh. Returns True."""
        with self._lock:
            if self._handed:  # else a refresh is already waiting for its first request
                self._provider = self._make()
                self._handed = 0
                self.refreshes += 1
        return True


_sources: OrderedDict[str, TokenSource] = OrderedDict()
_sources_lock = threading.Lock()


def token_source(choice: EntraChoice) -> TokenSource:
    """The process's `TokenSource` of `choice` (made, with its credential, on first use)."""
    key = choice.fingerprint()
    with _sources_lock:
        source = _sources.get(key)
        if source is not None:
            _sources.move_to_end(key)
            return source
    check_choice(choice)
    try:
        credential = _FACTORIES[choice.credential](choice)
    except ValueError as exc:  # e.g. workload identity without its environment variables
        raise InvalidInputError(
            f"entra_credential {choice.credential!r} cannot be used here:"
            f" {redact_text(str(exc))[:600]}"
        ) from None
    made = TokenSource(credential, choice.scope)
    with _sources_lock:
        source = _sources.setdefault(key, made)
        _sources.move_to_end(key)
        while len(_sources) > SOURCES_KEPT:
            _sources.popitem(last=False)
        return source


def clear_token_sources() -> None:
    """Forget every token source (their credentials and kept tokens)."""
    with _sources_lock:
        _sources.clear()
