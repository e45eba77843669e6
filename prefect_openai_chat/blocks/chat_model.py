"""The `ChatModel` block: which credentials, which model, and how calls behave."""

from __future__ import annotations

import logging
from collections.abc import Hashable
from typing import Any, Literal

import openai
from prefect.blocks.core import Block
from pydantic import Field, model_validator

from prefect_openai_chat.blocks.credentials import (
    _DOCS,
    _LOGO,
    AzureOpenAICredentials,
    OpenAICredentials,
)
from prefect_openai_chat.chat import ChatRunner
from prefect_openai_chat.chat.clients import cached_async_client, cached_sync_client
from prefect_openai_chat.chat.settings import ChatSettings
from prefect_openai_chat.tokens import is_pinned_snapshot
from prefect_openai_chat.tokens.prices import Price

logger = logging.getLogger("prefect_openai_chat")
_warned: set[str] = set()

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

    _block_type_name = "OpenAI Chat Model"
    _logo_url = _LOGO
    _documentation_url = _DOCS

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

    def _client_key(self) -> Hashable:
        timeouts = (self.connect_timeout_s, self.read_timeout_s, self.write_timeout_s,
                    self.pool_timeout_s, self.max_connections)
        return (self.credentials.cache_key(), timeouts)

    def get_client(self, async_client: bool = False) -> openai.OpenAI | openai.AsyncOpenAI:
        """The cached client for these settings in this thread (and event loop, if async)."""
        def build() -> Any:
            return self.credentials.get_client(
                async_client, timeout=self.timeout(), max_connections=self.max_connections
            )

        if async_client:
            return cached_async_client(self._client_key(), build)  # type: ignore[no-any-return]
        return cached_sync_client(self._client_key(), build)  # type: ignore[no-any-return]

    def chat_settings(self, name: str = "primary") -> ChatSettings:
        """The Prefect-free settings the runner works from."""
        if not is_pinned_snapshot(self.model):
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
        )

    def runner(self, name: str = "primary") -> ChatRunner:
        """A `ChatRunner` that sends this model's calls through its async client."""
        return ChatRunner(self.chat_settings(name), lambda: self.get_client(async_client=True))  # type: ignore[arg-type, return-value]

    def generation_params(self) -> dict[str, Any]:
        """The generation parameters that determine an answer (for cache keys)."""
        return {"model": self.model, **self.chat_settings().request_defaults()}
