"""The `ChatModel` block: which credentials, which model, and how calls behave."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import openai
from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from prefect_openai_chat.blocks.credentials import (
    _DOCS,
    _LOGO,
    AzureOpenAICredentials,
    OpenAICredentials,
)
from prefect_openai_chat.chat import ChatRunner
from prefect_openai_chat.chat.clients import CLIENTS
from prefect_openai_chat.chat.runner import ClientFactory, FallbackLoader
from prefect_openai_chat.chat.settings import ChatSettings
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.resilience import RetryPolicy, build_verdicts
from prefect_openai_chat.resilience.policy import MAX_TASK_RETRIES
from prefect_openai_chat.tokens import is_pinned_snapshot, model_info
from prefect_openai_chat.tokens.context import ContextStrategy
from prefect_openai_chat.tokens.prices import Price

logger = logging.getLogger("prefect_openai_chat")
_warned: set[str] = set()

REDIS_SCHEMES = ("redis", "rediss", "unix")

GENERATION_FIELDS = (
    "temperature",
    "top_p",
    "max_completion_tokens",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "stop",
    "user",
)


def warn_once(key: str, message: str, *args: Any) -> None:
    """Log `message` at WARNING the first time `key` is seen in this process."""
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


class ChatModel(Block):
    """A chat model on an endpoint, with its generation defaults and its call policy.

    Example:
        Load a saved chat model and send one completion:
        ```python
        from prefect import flow
        from prefect_openai_chat import ChatModel, chat_completion

        @flow
        def hello():
            chat_model = ChatModel.load("BLOCK_NAME")
            return chat_completion(chat_model, [{"role": "user", "content": "Hello"}])
        ```
    """

    model_config = ConfigDict(hide_input_in_errors=True)  # errors never echo a URL's password

    _block_type_name = "OpenAI Chat Model"
    _logo_url = _LOGO  # type: ignore[assignment]  # Prefect types it as HttpUrl
    _documentation_url = _DOCS  # type: ignore[assignment]

    credentials: OpenAICredentials | AzureOpenAICredentials = Field(
        default_factory=OpenAICredentials,
        description="The credentials block used to reach the endpoint.",
    )
    model: str = Field(
        default="gpt-4o-mini-2024-07-18",
        description="The model, ideally a pinned snapshot such as gpt-4o-mini-2024-07-18.",
    )
    # --- generation defaults (None: the API's default) ---
    temperature: float | None = Field(default=None, description="Sampling temperature, 0 to 2.")
    top_p: float | None = Field(default=None, description="Nucleus sampling mass, 0 to 1.")
    max_completion_tokens: int | None = Field(
        default=None, description="The most tokens the model may generate per call."
    )
    seed: int | None = Field(default=None, description="A seed for best-effort determinism.")
    frequency_penalty: float | None = Field(
        default=None, description="Penalty for frequent tokens, -2 to 2."
    )
    presence_penalty: float | None = Field(
        default=None, description="Penalty for tokens already present, -2 to 2."
    )
    stop: list[str] | None = Field(default=None, description="Up to 4 stop sequences.")
    user: str | None = Field(default=None, description="An end-user ID sent to the API.")
    # --- timeouts and pool ---
    connect_timeout_s: float = Field(default=5.0, description="Seconds to open a connection.")
    read_timeout_s: float = Field(
        default=120.0,
        description="Seconds to wait for the response, or for a stream's next chunk.",
    )
    write_timeout_s: float = Field(default=30.0, description="Seconds to send the request.")
    pool_timeout_s: float = Field(
        default=30.0, description="Seconds to wait for a free pooled connection."
    )
    max_connections: int = Field(
        default=100, description="The size of the HTTP connection pool per client."
    )
    attempt_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Seconds one HTTP attempt may take in all (a trickling server resets the read"
            " timeout with every byte); empty: 2 x read_timeout_s + connect_timeout_s."
        ),
    )
    call_timeout_s: float | None = Field(
        default=600.0,
        gt=0,
        description="Seconds one logical call may take, retries included; empty: no limit.",
    )
    # --- outcomes ---
    content_filter: Literal["raise", "flag"] = Field(
        default="raise",
        description="On a content filter stop: raise ContentFilteredError, or flag the result.",
    )
    safe_message: str = Field(
        default="This content was withheld by the provider's content filter.",
        description="The content of a flagged result when content_filter is flag.",
    )
    prices: dict[str, Price] | None = Field(
        default=None,
        description="Price overrides in USD per million tokens, by model name.",
    )
    # --- retries: the in-call tier and the task tier ---
    max_attempts: int = Field(
        default=4,
        ge=1,
        description="HTTP attempts per call within one task run, the first included.",
    )
    backoff_base_s: float = Field(
        default=0.5, ge=0, description="The first full-jitter backoff window, in seconds."
    )
    backoff_cap_s: float = Field(
        default=20.0, ge=0, description="The largest backoff window, in seconds."
    )
    retry_after_cap_s: float = Field(
        default=60.0,
        ge=0,
        description="The longest Retry-After the server may ask for, in seconds.",
    )
    task_retries: int = Field(
        default=2,
        ge=0,
        le=MAX_TASK_RETRIES,
        description="Task re-runs for errors that outlast the in-call retries, 0 to 10.",
    )
    error_overrides: dict[str, str] = Field(
        default_factory=dict,
        description="Error-table rows mapped to another action, such as {'409': 'fail'}.",
    )
    retry_budget_ratio: float = Field(
        default=0.2, ge=0, le=1, description="The largest share of requests that may be retries."
    )
    # --- circuit breaker ---
    circuit_failures: int = Field(
        default=5, ge=1, description="Consecutive outage errors that open the circuit."
    )
    circuit_reset_timeout_s: float = Field(
        default=30.0, gt=0, description="Seconds an open circuit waits before one probe call."
    )
    outage_patience_s: float = Field(
        default=120.0,
        ge=0,
        description="How long, from when the circuit opened, calls wait for its probe; past"
        " it they fail at once (no task retries) until a probe succeeds.",
    )
    circuit_successes: int = Field(
        default=1, ge=1, description="Successful probes needed to close the circuit again."
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="A Redis URL that shares the circuit and the rate limiter between processes"
        " and hosts; empty keeps both local to the process.",
    )
    circuit_redis_url: SecretStr | None = Field(
        default=None,
        description="Deprecated name of redis_url (used when redis_url is empty).",
    )
    # --- rate limits: learned from the API's headers; these fields only cap them ---
    requests_per_minute: int | None = Field(
        default=None, gt=0, description="A cap on requests per minute (empty: what the API says)."
    )
    tokens_per_minute: int | None = Field(
        default=None,
        gt=0,
        description="A cap on tokens per minute, prompt plus room (empty: what the API says).",
    )
    rate_limit_patience_s: float = Field(
        default=300.0,
        ge=0,
        description="The longest one call waits out 429 rate_limit_exceeded answers, in seconds;"
        " they count neither against max_attempts nor the retry budget.",
    )
    # --- fallbacks and the context window ---
    fallback_models: list[str] = Field(
        default_factory=list,
        description="Names of saved ChatModel blocks tried in order when this one is down.",
    )
    static_fallback: str | None = Field(
        default=None, description="Text answered when this model and every fallback are down."
    )
    context_strategy: ContextStrategy = Field(
        default="fail", description="What to do when the prompt does not fit the context window."
    )
    context_window: int | None = Field(
        default=None, gt=0, description="The context window in tokens; empty uses the model table."
    )

    @field_validator("error_overrides")
    @classmethod
    def _known_rows(cls, value: dict[str, str]) -> dict[str, str]:
        build_verdicts(value)  # a clear ValueError naming the unknown row or action
        return value

    @field_validator("redis_url", "circuit_redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        url = value.get_secret_value().strip() if value is not None else ""
        if not url:
            return None
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        if scheme not in REDIS_SCHEMES:
            shown = f"{scheme}://" if scheme else "no scheme"
            raise ValueError(
                f"{info.field_name} must start with redis://, rediss:// or unix:// (got {shown});"
                " for example redis://127.0.0.1:6379/0, or leave it empty to keep the circuit"
                " and the rate limiter local to the process"
            )
        return value

    @model_validator(mode="after")
    def _warn_about_settings(self) -> ChatModel:
        if self.temperature not in (None, 1.0) and self.top_p not in (None, 1.0):
            warn_once(
                f"temp-top-p:{self.model}",
                "both temperature and top_p are changed for %s; OpenAI recommends"
                " altering one of them, not both",
                self.model,
            )
        return self

    # --- what the tasks use ---

    @property
    def endpoint(self) -> str:
        """The base URL (or Azure deployment) this model is reached through."""
        return self.credentials.endpoint

    def timeout(self) -> openai.Timeout:
        """The split timeouts as an `openai.Timeout`."""
        return openai.Timeout(
            connect=self.connect_timeout_s,
            read=self.read_timeout_s,
            write=self.write_timeout_s,
            pool=self.pool_timeout_s,
        )

    def pool_settings(self) -> tuple[float, float, float, float, int]:
        """The timeouts and the pool size: with the credentials, what makes clients differ."""
        return (
            self.connect_timeout_s,
            self.read_timeout_s,
            self.write_timeout_s,
            self.pool_timeout_s,
            self.max_connections,
        )

    def build_client(self, async_client: bool = False) -> openai.OpenAI | openai.AsyncOpenAI:
        """A new client for these settings (SDK retries off, split timeouts, a sized pool)."""
        return self.credentials.get_client(
            async_client, timeout=self.timeout(), max_connections=self.max_connections
        )

    def get_client(self, async_client: bool = False) -> openai.OpenAI | openai.AsyncOpenAI:
        """An async client cached for these settings on the running event loop (closed with
        the loop), or, for `async_client=False`, a new sync client to keep and close."""
        if not async_client:
            return self.build_client()
        key = (self.credentials.cache_key(), self.pool_settings())
        return CLIENTS.get(key, lambda: self.build_client(async_client=True))  # type: ignore[no-any-return]

    def chat_settings(self, name: str = "primary") -> ChatSettings:
        """The Prefect-free settings the runner works from."""
        if model_info(self.model).known and not is_pinned_snapshot(self.model):
            warn_once(
                f"alias:{self.model}",
                "model %r is a floating alias whose behaviour moves over time; pin a dated"
                " snapshot (for example gpt-4o-mini-2024-07-18) for reproducible runs",
                self.model,
            )
        return ChatSettings(
            model=self.model,
            defaults={name: getattr(self, name) for name in GENERATION_FIELDS},
            content_filter=self.content_filter,
            safe_message=self.safe_message,
            prices=self.prices,
            base_url=self.endpoint,
            name=name,
            context_strategy=self.context_strategy,
            context_window=self.context_window,
            attempt_timeout_s=self.attempt_deadline_s,
            call_timeout_s=self.call_timeout_s,
        )

    @property
    def attempt_deadline_s(self) -> float:
        """`attempt_timeout_s`, or 2 x read_timeout_s + connect_timeout_s when it is empty."""
        if self.attempt_timeout_s is not None:
            return self.attempt_timeout_s
        return 2 * self.read_timeout_s + self.connect_timeout_s

    def retry_policy(self) -> RetryPolicy:
        """The two-tier retry policy these settings describe."""
        return RetryPolicy(
            max_attempts=self.max_attempts,
            backoff_base=self.backoff_base_s,
            backoff_cap=self.backoff_cap_s,
            retry_after_cap=self.retry_after_cap_s,
            task_retries=self.task_retries,
            task_retry_delay_s=self.circuit_reset_timeout_s,
            rate_limit_patience_s=self.rate_limit_patience_s,
            outage_patience_s=self.outage_patience_s,
            overrides=dict(self.error_overrides),
        )

    def shared_redis_url(self) -> str | None:
        """The Redis URL that shares the circuit and the limiter, if any."""
        url = self.redis_url or self.circuit_redis_url
        return url.get_secret_value() if url else None

    def rate_limit_key(self, fingerprint: str | None = None) -> str:
        """The limiter's key: endpoint, account and model (limits are per organisation and model).

        The account is the credentials' organisation (and project) when set, else a
        fingerprint of the key (`fingerprint`, when the caller has it already): set
        `organization` so that several keys share one limiter.
        """
        credentials = self.credentials
        parts = (getattr(credentials, "organization", None), getattr(credentials, "project", None))
        account = "/".join(str(part) for part in parts if part)
        if not account and fingerprint is None:
            try:
                secret = credentials.resolve_api_key()
            except InvalidInputError:
                secret = ""
            fingerprint = hashlib.sha256(secret.encode()).hexdigest()
        if not account:
            account = f"key-{fingerprint:.12}"
        return f"{self.endpoint}|{account}|{self.model}"

    def runner(
        self,
        name: str = "primary",
        fallbacks: Sequence[ChatRunner | FallbackLoader] = (),
        reload_credentials: Callable[[], Awaitable[bool]] | None = None,
        client: ClientFactory | None = None,
    ) -> ChatRunner:
        """A `ChatRunner` for this block alone: `RUNNERS.build(self, ...)` (blocks/assembly.py)."""
        from prefect_openai_chat.blocks.assembly import RUNNERS  # assembly reads this module

        return RUNNERS.build(
            self,
            name=name,
            fallbacks=fallbacks,
            reload_credentials=reload_credentials,
            client=client,
        )

    def generation_params(self) -> dict[str, Any]:
        """The generation parameters that determine an answer (for cache keys)."""
        return {"model": self.model, **self.chat_settings().request_defaults()}
