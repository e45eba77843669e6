"""Credentials blocks: where the API key lives, and the clients built from it.

Both blocks build clients with `max_retries=0`: the plugin's own policy retries,
so that SDK retries never multiply with task retries (docs/architecture.md).

`default_headers` often carry a gateway's key (`Helicone-Auth: Bearer sk-...`), so their
values are secrets: a `SecretDict`, shown as `**********` in flow-run parameters, saved
block documents and logs; the credential-looking values are masked in every text the
plugin hands on (`redaction.remember_headers`). A block saved with a plain dict still loads.

The proxy, CA bundle, client certificate and `verify` settings of both blocks come from
`NetworkSettings` (blocks/network.py; docs/concepts/proxies-and-tls.md).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Hashable
from typing import Any

import openai
from prefect.blocks.abstract import CredentialsBlock
from prefect.blocks.fields import SecretDict
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from prefect_openai_chat.blocks import entra
from prefect_openai_chat.blocks.network import NetworkSettings
from prefect_openai_chat.blocks.schema_once import SchemaOnce
from prefect_openai_chat.chat.settings import OPENAI_BASE_URL
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.redaction import remember_headers, remember_secret

_LOGO = "https://images.ctfassets.net/gm98wzqotmnx/2b2cSpF6p0w6nWzUyDZLda/openai.png"
_DOCS = "https://github.com/prefect-openai-chat/prefect-openai-chat#readme"
_HEADERS_DOC = (
    "Extra HTTP headers sent with every request (a gateway's key, for example);"
    " their values are stored and shown masked."
)


def _fingerprint(secret: str | None) -> str:
    """A short hash that tells keys apart without revealing them (for cache keys only)."""
    return hashlib.sha256((secret or "").encode()).hexdigest()[:16]


def client_cache_key(
    kind: str, headers: dict[str, str] | None, secret: str, *parts: Any
) -> Hashable:
    """What makes two clients interchangeable; holds fingerprints of the secret and of the
    headers, never them."""
    return (kind, *parts, _headers_fingerprint(headers), _fingerprint(secret))


def _headers_fingerprint(headers: dict[str, str] | None) -> str:
    """The headers' fingerprint ("" for none: most blocks have none, and hash nothing)."""
    return _fingerprint(repr(sorted(headers.items()))) if headers else ""


def checked_headers(value: SecretDict | None) -> SecretDict | None:
    """`default_headers` with text values; their credentials are masked from now on."""
    if value is None:
        return None
    headers = value.get_secret_value()
    wrong = sorted(str(name) for name, v in headers.items() if not isinstance(v, str))
    if wrong:
        raise ValueError(
            f"default_headers values must be text; the value of {', '.join(wrong)} is not"
            " (write it in quotes)"
        )
    remember_headers(headers)
    return value


def plain_headers(value: SecretDict | None) -> dict[str, str] | None:
    """The headers to send, out of their `SecretDict`."""
    return None if value is None else dict(value.get_secret_value())


def key_fingerprint(cache_key: Hashable) -> str:
    """The fingerprint of the secret inside a credentials block's `cache_key()`, not hashed again.

    Example:
        >>> key_fingerprint(client_cache_key("openai", None, "sk-doc")) == _fingerprint("sk-doc")
        True
    """
    assert isinstance(cache_key, tuple), "a credentials block's cache_key() is a tuple"
    return str(cache_key[-1])


def client_options(timeout: openai.Timeout | None, max_connections: int | None) -> dict[str, Any]:
    """Options shared by every client: no SDK retries, split timeouts, a sized pool."""
    options: dict[str, Any] = {"max_retries": 0}
    if timeout is not None:
        options["timeout"] = timeout
    if max_connections is not None:
        limits = type(openai.DEFAULT_CONNECTION_LIMITS)(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        options["limits"] = limits
    return options


class OpenAICredentials(SchemaOnce, CredentialsBlock, NetworkSettings):
    """Credentials for the OpenAI API or any OpenAI-compatible server (vLLM, Ollama).

    Example:
        Load saved credentials and build a client:
        ```python
        from prefect_openai_chat import OpenAICredentials

        credentials = OpenAICredentials.load("BLOCK_NAME")
        client = credentials.get_client()
        ```
    """

    model_config = ConfigDict(hide_input_in_errors=True)  # errors never echo a header's value

    _block_type_name = "OpenAI Chat Credentials"
    _logo_url = _LOGO  # type: ignore[assignment]  # Prefect types it as HttpUrl
    _documentation_url = _DOCS  # type: ignore[assignment]

    api_key: SecretStr | None = Field(
        default=None,
        description="The API key; when empty, the OPENAI_API_KEY environment variable is used.",
    )
    organization: str | None = Field(default=None, description="The OpenAI organization ID.")
    project: str | None = Field(default=None, description="The OpenAI project ID.")
    base_url: str | None = Field(
        default=None,
        description="The API base URL, for OpenAI-compatible servers; empty means OpenAI.",
    )
    default_headers: SecretDict | None = Field(default=None, description=_HEADERS_DOC)

    _headers = field_validator("default_headers")(checked_headers)

    def resolve_api_key(self) -> str:
        """The key to send: the block's, else `OPENAI_API_KEY`, else a clear error."""
        if self.api_key is not None and self.api_key.get_secret_value():
            return remember_secret(self.api_key.get_secret_value())
        from_env = os.environ.get("OPENAI_API_KEY")
        if from_env:
            return remember_secret(from_env)
        raise InvalidInputError(
            "no OpenAI API key: set api_key on the OpenAICredentials block"
            " or the OPENAI_API_KEY environment variable"
        )

    @property
    def endpoint(self) -> str:
        """The base URL calls go to (part of the circuit key)."""
        return (self.base_url or OPENAI_BASE_URL).rstrip("/")

    def cache_key(self) -> Hashable:
        """What makes two clients interchangeable; holds a key fingerprint, never the key."""
        return client_cache_key(
            "openai",
            plain_headers(self.default_headers),
            self.resolve_api_key(),
            self.endpoint,
            self.organization,
            self.project,
            self.network_fingerprint(),
        )

    def get_client(
        self,
        async_client: bool = False,
        *,
        timeout: openai.Timeout | None = None,
        max_connections: int | None = None,
    ) -> openai.OpenAI | openai.AsyncOpenAI:
        """Build an `OpenAI` (or `AsyncOpenAI`) client with the SDK's retries off."""
        options = self.http_options(async_client, client_options(timeout, max_connections))
        cls = openai.AsyncOpenAI if async_client else openai.OpenAI
        return cls(
            api_key=self.resolve_api_key(),
            organization=self.organization,
            project=self.project,
            base_url=self.base_url,
            default_headers=plain_headers(self.default_headers),
            **options,
        )


class AzureOpenAICredentials(SchemaOnce, CredentialsBlock, NetworkSettings):
    """Credentials for an Azure OpenAI resource (API key or Azure AD token).

    Microsoft Entra ID without a key: `entra_credential` names a credential whose tokens
    refresh through a night (docs/concepts/azure-entra-id.md).

    Example:
        Load saved Azure credentials and build a client:
        ```python
        from prefect_openai_chat import AzureOpenAICredentials

        credentials = AzureOpenAICredentials.load("BLOCK_NAME")
        client = credentials.get_client()
        ```
    """

    model_config = ConfigDict(hide_input_in_errors=True)  # errors never echo a header's value

    _block_type_name = "Azure OpenAI Chat Credentials"
    _logo_url = _LOGO  # type: ignore[assignment]  # Prefect types it as HttpUrl
    _documentation_url = _DOCS  # type: ignore[assignment]

    azure_endpoint: str = Field(
        description="The resource endpoint, such as https://my-resource.openai.azure.com."
    )
    api_version: str = Field(
        default="2024-10-21", description="The Azure OpenAI API version to call."
    )
    azure_deployment: str | None = Field(
        default=None, description="The deployment name; when empty, the model name is used."
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="The resource key; when empty, AZURE_OPENAI_API_KEY is used.",
    )
    azure_ad_token: SecretStr | None = Field(
        default=None,
        description="A fixed Entra ID token (it expires within about an hour); prefer"
        " entra_credential for anything longer.",
    )
    entra_credential: str | None = Field(default=None, description=entra.CREDENTIAL_DOC)
    tenant_id: str | None = Field(default=None, description="Entra ID directory (tenant) ID.")
    client_id: str | None = Field(
        default=None,
        description="Entra ID application (client) ID: of the service principal, or of a"
        " user-assigned managed identity.",
    )
    client_secret: SecretStr | None = Field(
        default=None, description="The service principal's client secret."
    )
    token_scope: str = Field(default=entra.SCOPE, description="The scope tokens are asked for.")
    default_headers: SecretDict | None = Field(default=None, description=_HEADERS_DOC)

    _headers = field_validator("default_headers")(checked_headers)

    @model_validator(mode="after")
    def _check_entra(self) -> AzureOpenAICredentials:
        if self.entra_credential and (self.api_key or self.azure_ad_token):
            raise InvalidInputError(
                "set either entra_credential or api_key/azure_ad_token on the"
                " AzureOpenAICredentials block, not both"
            )
        entra.check_choice(self.entra_choice())
        return self

    def entra_choice(self) -> entra.EntraChoice | None:
        """The Entra ID credential the block names, or None (a key or a fixed token)."""
        if not self.entra_credential:
            return None
        secret = self.client_secret.get_secret_value() if self.client_secret else None
        return entra.EntraChoice(
            self.entra_credential, self.tenant_id, self.client_id, secret, self.token_scope
        )

    async def arefresh_token(self) -> bool:
        """After a 401: drop the kept Entra ID token so the next request gets a new one;
        False without Entra ID (nothing to refresh)."""
        choice = self.entra_choice()
        return choice is not None and entra.token_source(choice).refresh()

    @property
    def endpoint(self) -> str:
        """The endpoint and deployment calls go to (part of the circuit key)."""
        return f"{self.azure_endpoint.rstrip('/')}/{self.azure_deployment or ''}".rstrip("/")

    def _secrets(self) -> dict[str, str]:
        choice = self.entra_choice()
        if choice is not None:  # the credential choice, hashed for the cache key: never a token
            return {"entra": f"entra:{choice.fingerprint()}"}
        if self.azure_ad_token is not None and self.azure_ad_token.get_secret_value():
            return {"azure_ad_token": self.azure_ad_token.get_secret_value()}
        key = (self.api_key.get_secret_value() if self.api_key else "") or os.environ.get(
            "AZURE_OPENAI_API_KEY", ""
        )
        if not key:
            raise InvalidInputError(
                "no Azure OpenAI credential: set entra_credential (Microsoft Entra ID), api_key"
                " or azure_ad_token on the AzureOpenAICredentials block, or AZURE_OPENAI_API_KEY"
            )
        return {"api_key": key}

    def resolve_api_key(self) -> str:
        """The secret that will be sent (key or token; with Entra ID, the choice's
        fingerprint); for fingerprints and rotation checks."""
        return remember_secret(next(iter(self._secrets().values())))

    def cache_key(self) -> Hashable:
        """What makes two clients interchangeable; holds a fingerprint, never the secret."""
        return client_cache_key(
            "azure",
            plain_headers(self.default_headers),
            self.resolve_api_key(),
            self.endpoint,
            self.api_version,
            self.network_fingerprint(),
        )

    def get_client(
        self,
        async_client: bool = False,
        *,
        timeout: openai.Timeout | None = None,
        max_connections: int | None = None,
    ) -> openai.AzureOpenAI | openai.AsyncAzureOpenAI:
        """Build an `AzureOpenAI` (or `AsyncAzureOpenAI`) client with the SDK's retries off."""
        options = self.http_options(async_client, client_options(timeout, max_connections))
        cls = openai.AsyncAzureOpenAI if async_client else openai.AzureOpenAI
        return cls(
            azure_endpoint=self.azure_endpoint,
            api_version=self.api_version,
            azure_deployment=self.azure_deployment,
            default_headers=plain_headers(self.default_headers),
            **self._auth(async_client),
            **options,
        )

    def _auth(self, async_client: bool) -> dict[str, Any]:
        """The SDK's credential argument: a token provider (Entra ID), a token or a key."""
        choice = self.entra_choice()
        if choice is None:
            return self._secrets()
        source = entra.token_source(choice)
        return {"azure_ad_token_provider": source.atoken if async_client else source.token}
