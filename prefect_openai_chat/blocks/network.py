"""Proxies and private certificate authorities: the network settings of both credentials blocks.

`NetworkSettings` is a mixin of `OpenAICredentials` and `AzureOpenAICredentials`: an HTTP(S)
proxy (its password a secret), a CA bundle (a path or PEM text) trusted in addition to the
system's CAs, a client certificate and key for gateways that require mutual TLS, and
`verify`. They are built into the `httpx` client through what `openai` exports
(`DefaultHttpxClient` / `DefaultAsyncHttpxClient`, which keep the SDK's defaults) as
`proxy=` and `verify=` an `ssl.SSLContext`. A TLS failure that only a setting fixes becomes a
`TLSConfigurationError` naming the host and the setting, a proxy's 407 or 403 a
`ProxyRefusedError` (neither retried). See
docs/concepts/proxies-and-tls.md.

Example:
    >>> from prefect_openai_chat import OpenAICredentials
    >>> credentials = OpenAICredentials(api_key="sk-doc", proxy_url="http://proxy.corp:3128")
    >>> credentials.network_fingerprint() != ""
    True
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import ssl
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import openai
from prefect.blocks.core import schema_extra as block_schema_extra
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from prefect_openai_chat.chat.http_library import http_library
from prefect_openai_chat.errors import (
    InvalidInputError,
    ProxyRefusedError,
    TLSConfigurationError,
    tls_failure,
)
from prefect_openai_chat.redaction import remember_secret

logger = logging.getLogger("prefect_openai_chat")
GUIDE = "docs/concepts/proxies-and-tls.md"
PROXY_SCHEMES = ("http", "https")
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_warned_unverified: set[str] = set()


def is_pem(value: str) -> bool:
    """True for PEM text (it holds a `-----BEGIN ...-----` line), False for a path."""
    return "-----BEGIN " in value


def normalized_pem(text: str) -> str:
    """PEM text with each block's base64 re-wrapped at 64 characters.

    A PEM pasted into a one-line field of the Prefect UI loses its line breaks; this
    puts them back, so that both forms load.

    Example:
        >>> print(normalized_pem("-----BEGIN CERTIFICATE----- QUJD REVG -----END CERTIFICATE-----"))
        -----BEGIN CERTIFICATE-----
        QUJDREVG
        -----END CERTIFICATE-----
        <BLANKLINE>
    """
    blocks = []
    for label, body in _PEM_BLOCK.findall(text):
        lines = [line.strip() for line in body.strip().splitlines()]
        headers = [line for line in lines if ":" in line]  # e.g. an encrypted key's Proc-Type
        data = "".join("".join(line.split()) for line in lines if ":" not in line)
        wrapped = textwrap.wrap(data, 64)
        head = [*headers, ""] if headers else []
        begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
        blocks.append("\n".join([begin, *head, *wrapped, end]))
    return "\n".join(blocks) + "\n"


def _network_fields_last(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Prefect's block schema, with these settings after the block's own fields in the UI."""
    block_schema_extra(schema, model)  # type: ignore[arg-type]
    properties = schema.get("properties", {})
    for name in NetworkSettings.model_fields:
        if name in properties:
            properties[name] = properties.pop(name)


class NetworkSettings(BaseModel):
    """Proxy, CA bundle, client certificate and TLS verification of a credentials block.

    A mixin placed after `CredentialsBlock`; its schema hook keeps Prefect's block schema
    and shows these settings last in the UI form.
    """

    model_config = ConfigDict(json_schema_extra=_network_fields_last)

    proxy_url: str | None = Field(
        default=None,
        description="The HTTP(S) proxy every request goes through, such as"
        " http://proxy.corp.example:3128, without credentials (those go in proxy_username"
        " and proxy_password). Empty: the HTTPS_PROXY/HTTP_PROXY environment variables apply.",
    )
    proxy_username: str | None = Field(
        default=None, description="The proxy's user name, when it asks for one."
    )
    proxy_password: SecretStr | None = Field(
        default=None, description="The proxy's password; stored and shown masked."
    )
    ca_bundle: str | None = Field(
        default=None,
        description="Your company's CA certificate(s), trusted in addition to the system's:"
        " a file path on the worker, or the PEM text (-----BEGIN CERTIFICATE-----...).",
    )
    client_cert: str | None = Field(
        default=None,
        description="A client certificate for a gateway that requires mutual TLS: a file path"
        " or the PEM text (with its chain, and the key too if client_key is empty).",
    )
    client_key: SecretStr | None = Field(
        default=None,
        description="The client certificate's private key (unencrypted PEM): a file path or"
        " the PEM text; stored and shown masked.",
    )
    verify: bool = Field(
        default=True,
        description="Verify the server's TLS certificate. Turn off only for a test server:"
        " anyone in between could then read and change the traffic.",
    )

    @field_validator("proxy_url")
    @classmethod
    def _proxy_url_shape(cls, value: str | None) -> str | None:
        return checked_proxy_url(value)

    @field_validator("proxy_password", "client_key")
    @classmethod
    def _remember(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            remember_secret(value.get_secret_value().strip())
        return value

    @field_validator("ca_bundle", "client_cert")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value if value is None or value.strip() else None

    @model_validator(mode="after")
    def _check_network(self) -> NetworkSettings:
        if self.proxy_password is not None and not self.proxy_username:
            raise InvalidInputError("proxy_password is set but proxy_username is empty: set both")
        if self.proxy_username and not self.proxy_url:
            raise InvalidInputError(
                "proxy_username is set but proxy_url is empty: set the proxy's URL,"
                " such as http://proxy.corp.example:3128"
            )
        if self._key_text() and not self.client_cert:
            raise InvalidInputError(
                "client_key is set but client_cert is empty: set the client certificate too"
            )
        sources = [self.ca_bundle, self.client_cert, self._key_text()]
        if any(sources) and all(is_pem(s) for s in sources if s):
            self.ssl_context()  # PEM text only: checked now (files: when first used)
        return self

    # --- what the credentials blocks use ---

    def has_network_settings(self) -> bool:
        """True when any setting differs from the SDK's defaults."""
        return (
            bool(self.proxy_url or self.ca_bundle or self.client_cert or self._key_text())
            or not self.verify
        )

    def network_fingerprint(self) -> str:
        """Tells the settings apart for the client cache without holding a secret
        ("" for none); a file's path, size and change time stand for its content."""
        if not self.has_network_settings():
            return ""
        parts = (
            self.proxy_url,
            self.proxy_username,
            _digest(self.proxy_password.get_secret_value() if self.proxy_password else ""),
            _source_identity("ca_bundle", self.ca_bundle),
            _source_identity("client_cert", self.client_cert),
            _source_identity("client_key", self._key_text()),
            self.verify,
        )
        return _digest(repr(parts))

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS settings as an `ssl.SSLContext`; None when they are the SDK's defaults.

        Raises:
            InvalidInputError: a file is missing, PEM does not parse, or the key does not
                match the certificate; the message names the setting and what to do.
        """
        if self.verify and not (self.ca_bundle or self.client_cert):
            return None
        context: ssl.SSLContext = http_library().create_ssl_context(verify=self.verify)
        if self.verify and self.ca_bundle:
            _load_ca_bundle(context, self.ca_bundle)
        if self.client_cert:
            _load_client_cert(context, self.client_cert, self._key_text())
        return context

    def http_options(self, async_client: bool, options: dict[str, Any]) -> dict[str, Any]:
        """`options` (from `client_options`) with an `http_client` built through what
        `openai` exports, carrying the pool size, the proxy and the TLS settings."""
        limits = options.pop("limits", None)
        if limits is None and not self.has_network_settings():
            return options  # the SDK's own client
        extra: dict[str, Any] = {"timeout": options.get("timeout")}
        if limits is not None:
            extra["limits"] = limits
        context = self.ssl_context()
        if context is not None:
            extra["verify"] = context
        if self.proxy_url:
            extra["proxy"] = self._proxy(context)
        if not self.verify:
            self._warn_unverified()
        factory = TLSAsyncHttpxClient if async_client else TLSHttpxClient
        options["http_client"] = factory(**{k: v for k, v in extra.items() if v is not None})
        return options

    # --- helpers ---

    def _key_text(self) -> str | None:
        key = self.client_key.get_secret_value().strip() if self.client_key else ""
        return key or None

    def _proxy(self, context: ssl.SSLContext | None) -> Any:
        """The proxy, with its credentials and the TLS settings for an https:// proxy."""
        auth = None
        if self.proxy_username:
            password = self.proxy_password.get_secret_value() if self.proxy_password else ""
            auth = (self.proxy_username, remember_secret(password))
        url = str(self.proxy_url)
        if not url.lower().startswith("https://"):
            context = None  # TLS to the proxy itself only for an https:// proxy
        return http_library().Proxy(url, auth=auth, ssl_context=context)

    def _warn_unverified(self) -> None:
        where = str(getattr(self, "endpoint", "")) or "this endpoint"
        if where in _warned_unverified:
            return
        _warned_unverified.add(where)
        logger.warning(
            "TLS verification is off (verify=False) for %s: anyone in between can read and"
            " change the traffic, the API key included; use ca_bundle for a private CA instead",
            where,
        )


def checked_proxy_url(value: str | None) -> str | None:
    """`proxy_url` stripped (empty: None), or a clear error that never shows a password."""
    url = (value or "").strip()
    if not url:
        return None
    try:
        parts = urlsplit(url)
        has_credentials = parts.username is not None or parts.password is not None
        host, scheme = parts.hostname, parts.scheme.lower()
        parts.port  # noqa: B018  # a port that is not a number raises here
    except ValueError:
        raise InvalidInputError(
            "proxy_url is not a URL; write it as http://proxy.corp.example:3128"
        ) from None
    if has_credentials:
        raise InvalidInputError(
            "proxy_url must not hold credentials: put the user name in proxy_username and the"
            " password in proxy_password (stored masked), and the URL without them in proxy_url"
        )
    if scheme not in PROXY_SCHEMES or not host:
        raise InvalidInputError(
            f"proxy_url must start with http:// or https:// and name a host (got"
            f" {scheme + '://' if scheme else 'no scheme'}); for example"
            " http://proxy.corp.example:3128"
        )
    return url


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _source_identity(setting: str, value: str | None) -> str:
    """What stands for a PEM text or file in the fingerprint: a digest, or path, size, mtime."""
    if not value:
        return ""
    if is_pem(value):
        return _digest(value)
    path = _existing_path(setting, value)
    info = path.stat()
    return f"{path}|{info.st_size}|{info.st_mtime_ns}"


def _existing_path(setting: str, value: str) -> Path:
    path = Path(value.strip()).expanduser()
    if not path.exists():
        raise InvalidInputError(
            f"{setting}: there is no file at {str(path)!r} on this machine; put the PEM file"
            f" there (on every worker), or paste its PEM text (-----BEGIN ...-----) into"
            f" {setting} instead (see {GUIDE})"
        )
    return path


def _load_ca_bundle(context: ssl.SSLContext, value: str) -> None:
    """Trust the CA certificate(s) of `value` (PEM text, a file or a folder of them)."""
    what = "the PEM text" if is_pem(value) else f"the file {value.strip()!r}"
    try:
        if is_pem(value):
            context.load_verify_locations(cadata=normalized_pem(value))
            return
        path = _existing_path("ca_bundle", value)
        if path.is_dir():
            context.load_verify_locations(capath=str(path))
        else:
            context.load_verify_locations(cafile=str(path))
    except (ssl.SSLError, ValueError, OSError) as exc:
        if isinstance(exc, InvalidInputError):
            raise
        raise InvalidInputError(
            f"ca_bundle: {what} holds no CA certificate in PEM form ({_reason(exc)}); give"
            " the CA certificate your company's proxy re-signs with, starting with"
            f" -----BEGIN CERTIFICATE----- (see {GUIDE})"
        ) from None


def _load_client_cert(context: ssl.SSLContext, cert: str, key: str | None) -> None:
    """Load the client certificate and its key; a clear error when they do not go together."""
    with _as_file("client_cert", cert) as cert_file, _as_file("client_key", key) as key_file:
        try:
            context.load_cert_chain(str(cert_file), key_file, password=_no_password)
        except (ssl.SSLError, OSError) as exc:
            raise InvalidInputError(_client_cert_problem(exc)) from None


def _no_password() -> str:
    """The password of an encrypted key: none (without it OpenSSL would ask on the terminal)."""
    raise InvalidInputError(
        "client_key is encrypted; give it unencrypted (for example `openssl pkey -in key.pem"
        f" -out key-plain.pem`) and keep it in the block's masked field (see {GUIDE})"
    )


def _client_cert_problem(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or ""
    if "MISMATCH" in reason:
        return (
            "client_key does not match client_cert: give the private key that was issued"
            f" with that certificate (see {GUIDE})"
        )
    return (
        f"client_cert or client_key is not a PEM certificate and private key ({_reason(exc)});"
        " give the certificate (-----BEGIN CERTIFICATE-----) and its private key"
        f" (-----BEGIN PRIVATE KEY-----), as file paths or PEM text (see {GUIDE})"
    )


@contextlib.contextmanager
def _as_file(setting: str, value: str | None) -> Iterator[str | None]:
    """A path for `value`: its own for a path; for PEM text, a private temporary file
    (mode 0600, removed as soon as it is loaded: `ssl` loads certificates only from files)."""
    if not value:
        yield None
        return
    if not is_pem(value):
        yield str(_existing_path(setting, value))
        return
    descriptor, name = tempfile.mkstemp(prefix="prefect-openai-chat-", suffix=".pem")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(normalized_pem(value))
        yield name
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or exc.__class__.__name__)


def _proxy_refusal(exc: BaseException, request: Any) -> ProxyRefusedError | None:
    """A `ProxyRefusedError` when the proxy answered 407 or 403 to the tunnel, else None."""
    status = str(exc).split(" ", 1)[0]
    if not isinstance(exc, http_library().ProxyError) or status not in ("407", "403"):
        return None
    where = _where(request)
    if status == "407":
        message = (
            f"the proxy refused its credentials ({exc}) on the way to {where}: check"
            f" proxy_username and proxy_password on the credentials block; see {GUIDE}"
        )
    else:
        message = (
            f"the proxy does not allow {where} ({exc}): ask for the host to be allowed,"
            f" or check proxy_url; see {GUIDE}"
        )
    return ProxyRefusedError(message, request)


def _where(request: Any) -> str:
    url = request.url
    return f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"


def clear_network_error(
    exc: BaseException, request: Any
) -> TLSConfigurationError | ProxyRefusedError | None:
    """The clear error for a failure behind `exc` that only a setting fixes (a TLS failure,
    a proxy's refusal), naming the host and the setting; None for any other error."""
    failure = tls_failure(exc)
    if failure is None:
        return _proxy_refusal(exc, request)
    where = _where(request)
    if isinstance(failure, ssl.SSLCertVerificationError):
        detail = failure.verify_message or failure.reason or "certificate verify failed"
        message = (
            f"TLS verification of {where} failed ({detail}): its certificate (or that of a"
            " proxy re-signing the traffic) is not signed by a CA this machine trusts. Set"
            " ca_bundle on the credentials block to your company's CA certificate (a file"
            f" path or its PEM text); see {GUIDE}"
        )
    elif failure.reason == "WRONG_VERSION_NUMBER":
        message = (
            f"{where} did not answer TLS ({failure.reason}): check the scheme of the base URL"
            f" or of proxy_url (http:// or https://); see {GUIDE}"
        )
    else:
        message = (
            f"{where} refused the TLS connection's client certificate ({failure.reason}): it"
            " requires mutual TLS. Set client_cert and client_key on the credentials block"
            f" to the certificate and key your gateway expects; see {GUIDE}"
        )
    return TLSConfigurationError(message, request)


class TLSHttpxClient(openai.DefaultHttpxClient):
    """The SDK's default sync client; a failure only a setting fixes is a clear error."""

    def send(self, request: Any, **kwargs: Any) -> Any:
        try:
            return super().send(request, **kwargs)
        except Exception as exc:
            clear = clear_network_error(exc, request)
            if clear is None:
                raise
            raise clear from exc


class TLSAsyncHttpxClient(openai.DefaultAsyncHttpxClient):
    """The SDK's default async client; a failure only a setting fixes is a clear error."""

    async def send(self, request: Any, **kwargs: Any) -> Any:
        try:
            return await super().send(request, **kwargs)
        except Exception as exc:
            clear = clear_network_error(exc, request)
            if clear is None:
                raise
            raise clear from exc
