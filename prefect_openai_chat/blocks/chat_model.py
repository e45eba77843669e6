"""The `ChatModel` block: which credentials, which model, and how calls behave."""

from __future__ import annotations

import hashlib
import logging
import warnings
from typing import Any, cast
from uuid import UUID

import openai
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import BlockDocumentUpdate
from prefect.exceptions import ObjectNotFound
from pydantic import ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from prefect_openai_chat.blocks.credentials import (
    _DOCS,
    _LOGO,
    AzureOpenAICredentials,
    OpenAICredentials,
)
from prefect_openai_chat.blocks.schema_once import SchemaOnce
from prefect_openai_chat.blocks.sections import (
    Circuit,
    Limits,
    Retries,
    Timeouts,
    flat_fields_in,
    nest_flat_fields,
)
from prefect_openai_chat.chat.clients import CLIENTS
from prefect_openai_chat.chat.settings import ChatSettings, ContentFilterMode
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.resilience import RetryPolicy
from prefect_openai_chat.tokens import is_pinned_snapshot, model_info
from prefect_openai_chat.tokens.context import ContextStrategy
from prefect_openai_chat.tokens.prices import Price

logger = logging.getLogger("prefect_openai_chat")
_warned: set[str] = set()

REDIS_SCHEMES = ("redis", "rediss", "unix")
_CHAT = ChatSettings(model="")  # the core's defaults, which the block's fields take

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


def _warn_if_unusable(name: str, fallback: ChatModel | Exception) -> None:
    """Log a warning when the saved fallback `name` could not be called: not saved, or its
    credentials hold no usable key or token (what is missing is said)."""
    if isinstance(fallback, Exception):
        logger.warning(
            "fallback %r is not a saved ChatModel block; save one with"
            " ChatModel(...).save(%r) before it is needed, or remove it from fallback_models",
            name,
            name,
        )
        return
    try:
        fallback.credentials.cache_key()  # reads the key (or Entra ID choice) as a call would
    except InvalidInputError as exc:
        logger.warning(
            "fallback %r has no usable credential: %s; a call that falls back to it would fail",
            name,
            exc,
        )


class ChatModel(SchemaOnce, Block):
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
    # --- how calls behave: one nested form each in the UI ---
    timeouts: Timeouts = Field(
        default_factory=Timeouts, description="How long each part of a call may take."
    )
    retries: Retries = Field(
        default_factory=Retries,
        description="The in-call retries, the retry budget and the task tier.",
    )
    circuit: Circuit = Field(
        default_factory=Circuit,
        description="When the endpoint counts as down, and how long calls wait for it.",
    )
    limits: Limits = Field(
        default_factory=Limits,
        description="Caps on the rate limits learned from the API, and the connection pool.",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="A Redis URL that shares the circuit and the rate limiter between processes"
        " and hosts; empty keeps both local to the process.",
    )
    # --- outcomes ---
    content_filter: ContentFilterMode = Field(
        default=_CHAT.content_filter,
        description="On a content filter stop: raise ContentFilteredError, or flag the result.",
    )
    safe_message: str = Field(
        default=_CHAT.safe_message,
        description="The content of a flagged result when content_filter is flag.",
    )
    prices: dict[str, Price] | None = Field(
        default=None,
        description="Price overrides in USD per million tokens, by model name.",
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
        default=_CHAT.context_strategy,
        description="What to do when the prompt does not fit the context window.",
    )
    context_window: int | None = Field(
        default=None, gt=0, description="The context window in tokens; empty uses the model table."
    )

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_layout(cls, data: Any) -> Any:
        """A block saved with the flat layout (before the sections) loads, with a warning."""
        if not isinstance(data, dict) or not flat_fields_in(data):
            return data
        warnings.warn(
            f"ChatModel fields {', '.join(flat_fields_in(data))} are the old flat layout; they"
            " now live in the sections timeouts, retries, circuit and limits (see"
            " docs/migrating.md). Save the block again to store the new layout:"
            " ChatModel.load(NAME).save(NAME, overwrite=True)",
            DeprecationWarning,
            stacklevel=2,
        )
        return nest_flat_fields(data)

    # Prefect merges the new data into the stored document when overwriting, which would keep
    # an old layout's flat keys beside the sections: the document's data is replaced instead.

    def _save_sync(
        self, name: str | None = None, is_anonymous: bool = False, overwrite: bool = False
    ) -> UUID:
        block_id = super()._save_sync(name=name, is_anonymous=is_anonymous, overwrite=overwrite)
        if overwrite:
            with get_client(sync_client=True) as client:
                client.update_block_document(block_id, self._whole_document())
        for fallback in self.fallback_models:
            try:
                _warn_if_unusable(fallback, cast(ChatModel, ChatModel.load(fallback)))
            except (ValueError, ObjectNotFound) as exc:
                _warn_if_unusable(fallback, exc)
        return block_id

    async def _save(
        self,
        name: str | None = None,
        is_anonymous: bool = False,
        overwrite: bool = False,
        client: Any = None,
    ) -> UUID:
        block_id = await super()._save(
            name=name, is_anonymous=is_anonymous, overwrite=overwrite, client=client
        )
        if overwrite:
            async with get_client() as fresh:
                await fresh.update_block_document(block_id, self._whole_document())
        for fallback in self.fallback_models:
            try:
                _warn_if_unusable(fallback, await ChatModel.aload(fallback))
            except (ValueError, ObjectNotFound) as exc:
                _warn_if_unusable(fallback, exc)
        return block_id

    def _whole_document(self) -> BlockDocumentUpdate:
        data = self._to_block_document(include_secrets=True).data
        return BlockDocumentUpdate(data=data, merge_existing_data=False)

    @field_validator("redis_url")
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
        return self.timeouts.for_client()

    def pool_settings(self) -> tuple[float, float, float, float, int]:
        """The timeouts and the pool size: with the credentials, what makes clients differ."""
        t = self.timeouts
        return (t.connect_s, t.read_s, t.write_s, t.pool_s, self.limits.max_connections)

    def build_client(self, async_client: bool = False) -> openai.OpenAI | openai.AsyncOpenAI:
        """A new client for these settings (SDK retries off, split timeouts, a sized pool)."""
        return self.credentials.get_client(
            async_client, timeout=self.timeout(), max_connections=self.limits.max_connections
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
            attempt_timeout_s=self.timeouts.attempt_deadline_s,
            call_timeout_s=self.timeouts.call_s,
        )

    def retry_policy(self) -> RetryPolicy:
        """The two-tier retry policy these settings describe (the task tier waits as long as
        an open circuit does before its probe)."""
        retries = self.retries
        return RetryPolicy(
            max_attempts=retries.max_attempts,
            backoff_base=retries.backoff_base_s,
            backoff_cap=retries.backoff_cap_s,
            retry_after_cap=retries.retry_after_cap_s,
            task_retries=retries.task_retries,
            task_retry_delay_s=self.circuit.reset_timeout_s,
            rate_limit_patience_s=self.limits.rate_limit_patience_s,
            outage_patience_s=self.circuit.outage_patience_s,
            overrides=dict(retries.error_overrides),
        )

    def shared_redis_url(self) -> str | None:
        """The Redis URL that shares the circuit and the limiter, if any."""
        return self.redis_url.get_secret_value() if self.redis_url else None

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

    def generation_params(self) -> dict[str, Any]:
        """The generation parameters that determine an answer (for cache keys)."""
        return {"model": self.model, **self.chat_settings().request_defaults()}
