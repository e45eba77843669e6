"""Assembly of a call: the one place a `ChatModel` block becomes a `ChatRunner`.

The tasks ask `RUNNERS.assemble(chat_model)` for the block and its runner. The factory
resolves a saved block by name, reads the credentials once (one fingerprint of the
key per call), takes the client from the process's one `ClientCache`, the circuit
guard, retry budget and limiter from their registries, and wires saved fallbacks
(loaded on first need) and the reload of the credentials after a 401. The runner it
returns only calls down: into the retry tier and its `ClientSource`, never back into
a task or a block.

Example:
    >>> from prefect_openai_chat import ChatModel, OpenAICredentials
    >>> from prefect_openai_chat.blocks.assembly import RUNNERS
    >>> model = ChatModel(credentials=OpenAICredentials(api_key="sk-doc"), model="gpt-4o-mini")
    >>> RUNNERS.build(model).settings.model
    'gpt-4o-mini'
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar, cast

from openai import AsyncOpenAI
from prefect.exceptions import ObjectNotFound

from prefect_openai_chat.blocks.chat_model import ChatModel
from prefect_openai_chat.blocks.credentials import AzureOpenAICredentials, key_fingerprint
from prefect_openai_chat.chat import ChatRunner
from prefect_openai_chat.chat.clients import CLIENTS, ClientCache, ClientSource
from prefect_openai_chat.chat.protection import Protection
from prefect_openai_chat.chat.runner import ClientFactory, FallbackLoader
from prefect_openai_chat.errors import InvalidInputError, MissingFallbackError
from prefect_openai_chat.extraction.batch_api.client import BatchClient
from prefect_openai_chat.resilience import (
    CircuitGuard,
    RetryBudget,
    circuit_key,
    get_circuit_guard,
    get_rate_limiter,
    get_retry_budget,
)


async def resolve_chat_model(chat_model: ChatModel | str) -> ChatModel:
    """Return the block itself, or load the saved `ChatModel` of that name."""
    if isinstance(chat_model, ChatModel):
        return chat_model
    if not isinstance(chat_model, str) or not chat_model.strip():
        raise InvalidInputError(
            f"chat_model must be a ChatModel block or the name of a saved one, got {chat_model!r}"
        )
    try:
        return await ChatModel.aload(chat_model.strip())
    except (ValueError, ObjectNotFound) as exc:
        raise InvalidInputError(
            f"no saved ChatModel block named {chat_model!r}; save one with"
            " ChatModel(...).save(name) or `prefect-openai-chat setup`, or pass the block itself"
        ) from exc


class RunnerFactory:
    """Builds runners from `ChatModel` blocks, with one client cache.

    Args:
        clients: The client cache (the process's own by default).
    """

    def __init__(self, clients: ClientCache[Any] = CLIENTS) -> None:
        self.clients = clients

    async def assemble(self, chat_model: ChatModel | str) -> tuple[ChatModel, ChatRunner]:
        """The block (loaded when named) and its runner, with its saved fallbacks and the
        reload of the credentials after a 401 (the saved block again when named, and the
        environment read anew; the call is retried only if the key changed, or, with
        Microsoft Entra ID, once with a new token)."""
        model = await resolve_chat_model(chat_model)
        source = self.source(model)
        source.key  # noqa: B018  # read the credentials now: a missing key fails before any call

        async def reload_credentials() -> bool:
            fresh = await resolve_chat_model(chat_model) if isinstance(chat_model, str) else model
            try:
                key = _client_key(fresh)
            except InvalidInputError:
                return False
            changed = source.switch(key, _builder(fresh))
            return changed or await _refresh_token(fresh)

        fallbacks = [SavedFallback(name, model.model, self) for name in model.fallback_models]
        runner = await off_the_loop(
            model,
            lambda: self.build(
                model, fallbacks=fallbacks, reload_credentials=reload_credentials, source=source
            ),
        )
        return model, runner

    def build(
        self,
        model: ChatModel,
        *,
        name: str = "primary",
        fallbacks: Sequence[ChatRunner | FallbackLoader] = (),
        reload_credentials: Callable[[], Awaitable[bool]] | None = None,
        client: ClientFactory | None = None,
        source: ClientSource | None = None,
    ) -> ChatRunner:
        """The runner of `model` alone: settings, client, protection, the given fallbacks."""
        settings = model.chat_settings(name)
        fingerprint = None
        if source is not None:  # assembled: the key was read already, not hashed again
            fingerprint = key_fingerprint(cast(ClientKey, source.key)[0])
        if client is None:
            client = source or self.source(model)  # reads the credentials at the first call
        protection = self.protection(
            model, circuit_key(settings.base_url, settings.model), fingerprint
        )
        protection.reload_credentials = reload_credentials
        return ChatRunner(
            settings,
            client,
            protection=protection,
            fallbacks=fallbacks,
            static_fallback=model.static_fallback,
        )

    def source(self, model: ChatModel) -> ClientSource:
        """The client source of `model`'s settings (reads the credentials once, when needed)."""
        return ClientSource(lambda: _client_key(model), _builder(model), self.clients)

    @staticmethod
    def batch_client(model: ChatModel) -> BatchClient:
        """The Files and Batch API calls over `model`'s client, under its retry policy, and
        the circuit guard and retry budget of `<endpoint>|batch API` (made with its settings)."""
        key = circuit_key(model.endpoint, BATCH_CIRCUIT)
        guard, budget = _guard_and_budget(model, key)
        client = cast(AsyncOpenAI, model.get_client(async_client=True))
        return BatchClient(client, model.retry_policy(), key, guard=guard, budget=budget)

    @staticmethod
    def protection(model: ChatModel, key: str, fingerprint: str | None = None) -> Protection:
        """Policy, circuit guard and retry budget for calls on the circuit `key`, and the
        limiter of `model`'s account (`fingerprint`: of its key, when already known); each
        shared with the blocks whose settings are the same (see resilience/registry.py)."""
        guard, budget = _guard_and_budget(model, key)
        # Always a limiter: it learns the limits from the API's headers; the fields cap them.
        limiter = get_rate_limiter(
            model.rate_limit_key(fingerprint),
            rpm=model.limits.requests_per_minute,
            tpm=model.limits.tokens_per_minute,
            redis_url=model.shared_redis_url(),
        )
        return Protection(policy=model.retry_policy(), guard=guard, budget=budget, limiter=limiter)


class SavedFallback:
    """Loads the saved `ChatModel` block of a fallback the first time a call needs it."""

    def __init__(self, name: str, primary: str, factory: RunnerFactory) -> None:
        self.name, self.primary, self._factory = name, primary, factory
        self._runner: ChatRunner | None = None

    async def __call__(self) -> ChatRunner:
        if self._runner is None:
            try:
                model: ChatModel = await ChatModel.aload(self.name)
            except (ValueError, ObjectNotFound):
                raise MissingFallbackError(
                    f"fallback {self.name!r} of the ChatModel for {self.primary!r} is not a saved"
                    f" ChatModel block; save one with ChatModel(...).save({self.name!r}), or"
                    " remove it from fallback_models"
                ) from None
            self._runner = await off_the_loop(
                model, lambda: self._factory.build(model, name=self.name)
            )
        return self._runner


ClientKey = tuple[Hashable, Hashable]
BATCH_CIRCUIT = "batch API"  # the circuit of an endpoint's Files and Batch API calls


def _guard_and_budget(model: ChatModel, key: str) -> tuple[CircuitGuard, RetryBudget]:
    """The circuit guard and retry budget of `key` with `model`'s settings."""
    circuit = model.circuit.settings()
    guard = get_circuit_guard(
        key,
        fail_max=circuit.fail_max,
        reset_timeout_s=circuit.reset_timeout_s,
        success_threshold=circuit.success_threshold,
        redis_url=model.shared_redis_url(),
    )
    return guard, get_retry_budget(key, ratio=model.retries.budget_ratio)


T = TypeVar("T")


async def off_the_loop(model: ChatModel, build: Callable[[], T]) -> T:
    """`build()`, in a worker thread when `model` shares its circuit through Redis: making
    a circuit guard then reads and initialises its state there, which blocks."""
    if model.shared_redis_url():
        return await asyncio.to_thread(build)
    return build()


def _client_key(model: ChatModel) -> ClientKey:
    """(credentials' cache key, pool settings): what makes two clients interchangeable."""
    return (model.credentials.cache_key(), model.pool_settings())


async def _refresh_token(model: ChatModel) -> bool:
    """Drop the kept Entra ID token of `model`'s Azure credentials (False: no token to drop)."""
    credentials = model.credentials
    return isinstance(credentials, AzureOpenAICredentials) and await credentials.arefresh_token()


def _builder(model: ChatModel) -> Callable[[], Any]:
    return lambda: model.build_client(async_client=True)


RUNNERS = RunnerFactory()  # what the tasks ask for runners
