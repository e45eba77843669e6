"""The Starlette app: `/v1/chat/completions` (and Azure's deployment path), `/v1/models`,
`/v1/files`, `/v1/batches`, and the `/_simulator/*` admin endpoints.

Example:
    >>> app = create_app(profile="ideal")
    >>> app.state.sim.settings.api_keys
    ['sk-simulator']
"""

from __future__ import annotations

import os
import time
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.routing import Route

from prefect_openai_chat.simulator import payloads
from prefect_openai_chat.simulator.admin_routes import admin_routes
from prefect_openai_chat.simulator.answers import Answer, build_answer
from prefect_openai_chat.simulator.azure import (
    DEPLOYMENT_CHAT_PATH,
    MANAGED_IDENTITY_PATH,
    azure_key,
    managed_identity_token,
    token_identity,
)
from prefect_openai_chat.simulator.batch_routes import batch_routes
from prefect_openai_chat.simulator.errors import (
    HTML_502,
    SimError,
    error_body,
    fault_error,
    rate_limit_error,
    shape_fault_response,
)
from prefect_openai_chat.simulator.faults import (
    CONTENT_FAULTS,
    HTTP_FAULTS,
    JSON_FAULTS,
    SHAPE_FAULTS,
    STREAM_FAULTS,
    parse_fault_list,
)
from prefect_openai_chat.simulator.profiles import settings_for
from prefect_openai_chat.simulator.prompt_cache import (
    CACHE_STEP,
    MIN_CACHED_TOKENS,
    prompt_tokens_for_cache,
)
from prefect_openai_chat.simulator.request import ChatRequest, parse_chat_request
from prefect_openai_chat.simulator.responses import BodyResponse, ResetResponse, StreamResponse
from prefect_openai_chat.simulator.scripted import scripted_answer
from prefect_openai_chat.simulator.settings import SimulatorSettings
from prefect_openai_chat.simulator.state import SimulatorState
from prefect_openai_chat.tokens import count_message_tokens, count_request_tokens, model_info
from prefect_openai_chat.tokens.encodings import get_encoding
from prefect_openai_chat.tokens.models import FAMILIES

LISTED_MODELS = FAMILIES  # every family of the plugin's model table is served
_STALL_FRAMES = 3


def create_app(
    settings: SimulatorSettings | None = None, *, profile: str = "ideal", **overrides: Any
) -> Starlette:
    """An ASGI app serving the simulator; its live state is `app.state.sim`."""
    state = SimulatorState(settings or settings_for(profile, **overrides))
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", _chat, methods=["POST"]),
            Route(DEPLOYMENT_CHAT_PATH, _chat, methods=["POST"]),  # Azure OpenAI
            Route("/v1/models", _models, methods=["GET"]),
            Route("/v1/models/{model:path}", _model, methods=["GET"]),
            Route(MANAGED_IDENTITY_PATH, managed_identity_token, methods=["GET"]),
            *admin_routes(),
            *batch_routes(_check_key),
        ],
        exception_handlers={HTTPException: _http_error},
    )
    state.answer_batch_line = lambda key, body: _answer_batch_line(state, key, body)
    state.batch_prompt_tokens = _batch_prompt_tokens
    app.state.sim = state
    return app


class _Ctx:
    """Per-request helpers: common headers and error answers."""

    __slots__ = ("key", "request_id", "start", "state")

    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self.request_id = "req_" + os.urandom(16).hex()
        self.start = time.perf_counter()
        self.key = ""

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {
            "x-request-id": self.request_id,
            "openai-version": "2020-10-01",
            "openai-processing-ms": str(int((time.perf_counter() - self.start) * 1000)),
            **self.state.limiter.headers(self.key),
        }
        if extra:
            headers.update(extra)
        return headers

    def error(self, err: SimError, done: Any = None) -> BodyResponse:
        counters = self.state.counters
        counters.record_status(err.status)
        if err.fault:
            counters.record_fault(err.fault)
        body = payloads.to_json(error_body(err, self.state.settings.error_format))
        return BodyResponse(err.status, self.headers(err.headers), body, on_done=done)


async def _chat(request: Request) -> Any:
    state: SimulatorState = request.app.state.sim
    counters = state.counters
    index = counters.enter()
    applied: list[tuple[str, ...]] = [()]
    answer = await _chat_answer(request, state, index, applied)
    if state.request_log is not None:  # the client has sent the body, even if it is refused
        status = answer.status if isinstance(answer, BodyResponse) else None
        if isinstance(answer, StreamResponse):
            status = 200
        try:
            body = await request.body()
        except ClientDisconnect:  # the client went away before sending it all
            body = b""
        state.request_log.write(index, body, status, applied[0], request.headers)
    return answer


async def _chat_answer(
    request: Request, state: SimulatorState, index: int, applied: list[tuple[str, ...]]
) -> Any:
    """The answer to chat request `index`; `applied[0]` is set to the faults it gets."""
    counters = state.counters
    done = counters.leave
    ctx = _Ctx(state)
    settings = state.settings
    try:
        faults, u_reprompt = state.picker.draw(settings.fault_rates, settings.script, index)
        applied[0] = faults
        outage = state.outage_mode(index)
        if outage is not None:
            applied[0] = ("outage",)
            counters.record_fault("outage")
            if outage == "refuse":
                return ResetResponse(on_done=done)
            err = fault_error("503", "", 0)
            err.fault = None  # counted as `outage`
            return ctx.error(err, done)
        ctx.key = _check_key(request, state)
        req = parse_chat_request(await request.body())
        forced = request.headers.get("x-simulator-fault")
        if forced is not None and settings.allow_fault_header:
            try:
                faults = applied[0] = parse_fault_list(forced)
            except ValueError as exc:
                raise SimError(400, str(exc), param="x-simulator-fault") from None
        prompt_tokens = _check_model_and_context(req, settings)
        if req.stream and settings.refuse_streams:
            raise SimError(
                400,
                "Unsupported value: 'stream' does not support true with this model."
                " Supported values are: false.",
                param="stream",
                code="unsupported_value",
            )
        http_fault = _http_fault(faults, req.stream)
        if http_fault is not None:
            return _http_fault_response(ctx, http_fault, req, done)
        return _answer(ctx, req, faults, prompt_tokens, u_reprompt, done)
    except SimError as err:
        return ctx.error(err, done)
    except Exception as exc:  # a simulator bug must still answer like a server would
        return ctx.error(SimError(500, f"simulator error: {exc!r}", type="server_error"), done)


def _check_key(request: Request, state: SimulatorState) -> str:
    azure = azure_key(request.headers, state.api_keys)
    if azure is not None:
        return azure
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer ") or not auth[7:].strip():
        raise SimError(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    key = auth[7:].strip()
    if state.settings.expiring_tokens:
        identity = token_identity(key)  # an expired token is a 401, like Azure's
        if identity is not None:
            return identity
    if key not in state.api_keys:
        shown = key[:3] + "*" * 8 + key[-4:] if len(key) > 8 else "*" * len(key)
        raise SimError(
            401,
            f"Incorrect API key provided: {shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )
    return key


def _context_window(model: str, settings: SimulatorSettings) -> int | None:
    if model in settings.extra_models:
        return settings.extra_models[model]
    info = model_info(model)
    return info.context_window if info.known else None


def _check_model_and_context(req: ChatRequest, settings: SimulatorSettings) -> int:
    window = _context_window(req.model, settings)
    if window is None:
        raise SimError(
            404,
            f"The model `{req.model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    info = model_info(req.model)
    if req.max_tokens is not None and info.known and req.max_tokens > info.max_output_tokens:
        param = "max_completion_tokens" if "max_completion_tokens" in req.body else "max_tokens"
        raise SimError(
            400,
            f"{param} is too large: {req.max_tokens}. This model supports at most "
            f"{info.max_output_tokens} completion tokens, whereas you provided {req.max_tokens}.",
            param=param,
            code="invalid_value",
        )
    prompt = count_message_tokens(
        req.messages, req.model, req.tools, response_format=req.body.get("response_format")
    )
    completion = req.max_tokens or 0
    if prompt + completion > window:
        if req.max_tokens is None:
            message = (
                f"This model's maximum context length is {window} tokens. However, your messages "
                f"resulted in {prompt} tokens. Please reduce the length of the messages."
            )
        else:
            message = (
                f"This model's maximum context length is {window} tokens. However, you requested "
                f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the "
                "completion). Please reduce the length of the messages or completion."
            )
        raise SimError(400, message, param="messages", code="context_length_exceeded")
    return prompt


def _http_fault(faults: tuple[str, ...], stream: bool) -> str | None:
    for fault in faults:
        if fault in HTTP_FAULTS or fault in SHAPE_FAULTS:
            return fault
        if not stream and fault in STREAM_FAULTS:
            return fault
    return None


def _http_fault_response(ctx: _Ctx, fault: str, req: ChatRequest, done: Any) -> Any:
    state = ctx.state
    settings = state.settings
    if fault in SHAPE_FAULTS:
        state.counters.record_fault(fault)
        status, answer = shape_fault_response(
            fault, ctx.headers(), req.model, req.stream, ctx.key, done, settings.hang_s
        )
        state.counters.record_status(status)
        return answer
    if fault in ("reset", "hang", "stall"):
        state.counters.record_fault(fault)
        return ResetResponse(0.0 if fault == "reset" else settings.hang_s, on_done=done)
    if fault == "502-html":
        state.counters.record_fault(fault)
        state.counters.record_status(502)
        return BodyResponse(502, ctx.headers(), HTML_502, b"text/html", on_done=done)
    if fault == "cut":  # non-stream: the body is cut mid-way
        state.counters.record_fault(fault)
        body = b'{"id":"chatcmpl-' + os.urandom(8).hex().encode() + b'","object":"chat.completion",'
        state.counters.record_status(200)
        return BodyResponse(200, ctx.headers(), body * 4, cut_after=len(body), on_done=done)
    name = "500" if fault == "stream-error" else fault
    err = fault_error(name, req.model, settings.retry_after_s)
    err.fault = fault
    return ctx.error(err, done)


def _build(
    state: SimulatorState, req: ChatRequest, faults: tuple[str, ...], u_reprompt: float
) -> Answer:
    """The answer to `req` under `faults`, with the simulator's seed and re-prompt settings."""
    settings = state.settings
    scripted = scripted_answer(req, settings.answers)
    if scripted is not None:
        return scripted
    return build_answer(
        req,
        faults,
        seed=settings.seed,
        u_reprompt=u_reprompt,
        reprompt_failure_rate=settings.reprompt_failure_rate,
        refusal=settings.refusal_text,
    )


def _answer(
    ctx: _Ctx, req: ChatRequest, faults: tuple[str, ...], prompt: int, u_reprompt: float, done: Any
) -> Any:
    state = ctx.state
    settings = state.settings
    counters = state.counters
    answer = _build(state, req, faults, u_reprompt)
    completion = answer.completion_tokens
    charge = prompt + (req.max_tokens * req.n if req.max_tokens else completion)
    verdict = state.limiter.check(ctx.key, charge)
    if verdict.refused is not None:
        counters.record_rate_limit(verdict.refused)
        raise rate_limit_error(
            req.model, verdict.refused, verdict.used, verdict.limit, verdict.retry_after_s, charge
        )
    counters.record_admitted()
    if answer.reprompt:
        counters.reprompts += 1
    if answer.fault:
        counters.record_fault(answer.fault)
    counters.record_tokens(ctx.key, prompt, completion)
    cached = _cached_tokens(state, ctx.key, req, prompt)
    env = payloads.Envelope.new(req.model, _fingerprint(settings.seed))
    rate = settings.tokens_per_s
    if not req.stream:
        counters.record_status(200)
        delay = settings.ttft_s + (completion / rate if rate else 0.0)
        body = payloads.to_json(payloads.completion_body(env, answer, prompt, cached))
        return BodyResponse(200, ctx.headers(), body, delay_s=delay, on_done=done)
    return _stream(ctx, req, answer, env, (prompt, cached), completion, faults, done)


def _cached_tokens(state: SimulatorState, key: str, req: ChatRequest, prompt: int) -> int:
    """Prompt tokens read from the prompt cache (0 below 1,024 or with caching off)."""
    if not state.settings.prompt_caching or prompt < MIN_CACHED_TOKENS:
        return 0
    encode = get_encoding(model_info(req.model).encoding).encode_ordinary
    tokens = prompt_tokens_for_cache(req.messages, req.tools, None, encode)
    found = state.prompt_cache.lookup_and_store(f"{key}|{req.model}", tokens)
    cached = min(found, prompt // CACHE_STEP * CACHE_STEP)  # whole 128-token steps of the prompt
    state.counters.cached_tokens += cached
    return cached


def _answer_batch_line(
    state: SimulatorState, key: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any], int]:
    """One batch line answered like `/v1/chat/completions`: (status, body, prompt tokens).

    Content and JSON faults of `fault_rates` apply; HTTP faults belong to the connection
    and do not (`batch_faults` fails lines instead).
    """
    settings, counters = state.settings, state.counters
    counters.batch_requests += 1
    try:
        req = parse_chat_request(payloads.to_json(body))
        if req.stream:
            raise SimError(400, "Streaming is not supported by the Batch API.", param="stream")
        prompt = _check_model_and_context(req, settings)
    except SimError as err:
        return err.status, error_body(err, "openai"), 0
    rates = {
        name: rate
        for name, rate in settings.fault_rates.items()
        if name in CONTENT_FAULTS or name in JSON_FAULTS
    }
    faults, u_reprompt = state.picker.draw(rates, (), 0)
    answer = _build(state, req, faults, u_reprompt)
    completion = answer.completion_tokens
    cached = _cached_tokens(state, key, req, prompt)
    tally = counters.batch_tokens
    tally["prompt"] += prompt
    tally["completion"] += completion
    tally["cached"] += cached
    env = payloads.Envelope.new(req.model, _fingerprint(settings.seed))
    return 200, payloads.completion_body(env, answer, prompt, cached), prompt


def _batch_prompt_tokens(body: dict[str, Any]) -> int:
    """A batch line's prompt tokens, for the enqueued-token limit (0 if it cannot be counted)."""
    try:
        return count_request_tokens(body)
    except Exception:
        return 0


def _stream(
    ctx: _Ctx, req: ChatRequest, answer: Any, env: Any, prompt_cached: tuple[int, int],
    completion: int, faults: tuple[str, ...], done: Any,
) -> StreamResponse:  # fmt: skip
    prompt, cached = prompt_cached
    state = ctx.state
    settings = state.settings
    writer = payloads.ChunkWriter(env, req.include_usage)
    stream_fault = next((f for f in faults if f in STREAM_FAULTS), None)
    frames: list[bytes] = []
    end = "done"
    for index, choice in enumerate(answer.choices):
        first, body, last = writer.choice_frames(index, choice)
        if stream_fault == "stall":
            frames += [first, *body[:_STALL_FRAMES]]
            end = "stall"
            break
        if stream_fault in ("cut", "stream-error"):
            frames += [first, *body[: len(body) // 2]]
            if stream_fault == "stream-error":
                frames.append(payloads.error_frame())
            end = "cut"
            break
        frames += [first, *body, last]
    if end == "done":
        if req.include_usage:
            frames.append(writer.usage_frame(prompt, completion, cached))
        if "no-done" not in faults:
            frames.append(payloads.DONE)
    if stream_fault:
        state.counters.record_fault(stream_fault)
    state.counters.record_status(200)
    rate = settings.tokens_per_s
    return StreamResponse(
        ctx.headers(),
        frames,
        first_delay_s=settings.ttft_s,
        per_frame_s=1.0 / rate if rate else 0.0,
        end=end,
        stall_s=settings.stall_s,
        on_done=done,
    )


def _fingerprint(seed: int) -> str:
    return "fp_" + f"{(seed * 2654435761) % (1 << 40):010x}"


async def _models(request: Request) -> Any:
    state: SimulatorState = request.app.state.sim
    ctx = _Ctx(state)
    try:
        ctx.key = _check_key(request, state)
    except SimError as err:
        return ctx.error(err)
    names = [*LISTED_MODELS, *state.settings.extra_models]
    state.counters.record_status(200)
    return BodyResponse(200, ctx.headers(), payloads.to_json(payloads.models_body(names)))


async def _model(request: Request) -> Any:
    state: SimulatorState = request.app.state.sim
    ctx = _Ctx(state)
    name = request.path_params["model"]
    try:
        ctx.key = _check_key(request, state)
        if _context_window(name, state.settings) is None:
            raise SimError(
                404, f"The model '{name}' does not exist", param="model", code="model_not_found"
            )
    except SimError as err:
        return ctx.error(err)
    state.counters.record_status(200)
    return BodyResponse(200, ctx.headers(), payloads.to_json(payloads.model_entry(name)))


async def _http_error(request: Request, exc: Exception) -> Any:
    status = getattr(exc, "status_code", 404)
    err = SimError(status, f"Invalid URL ({request.method} {request.url.path})")
    body = payloads.to_json(error_body(err, "openai"))
    return BodyResponse(status, {"x-request-id": "req_" + os.urandom(16).hex()}, body)
