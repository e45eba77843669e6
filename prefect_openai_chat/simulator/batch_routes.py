"""HTTP routes of the simulator's Files and Batch APIs: `/v1/files` and `/v1/batches`.

Uploads are read with the standard library's MIME parser (the multipart body the
`openai` client sends), so the simulator needs no form-parsing package.

Example:
    >>> [route.path for route in batch_routes(lambda request, state: "k")][:2]
    ['/v1/files', '/v1/files/{file_id}']
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import os
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from prefect_openai_chat.simulator import payloads
from prefect_openai_chat.simulator.batches import BATCH_ENDPOINT, Job
from prefect_openai_chat.simulator.errors import SimError, error_body
from prefect_openai_chat.simulator.responses import BodyResponse

CheckKey = Callable[[Request, Any], str]


def batch_routes(check_key: CheckKey) -> list[Route]:
    """The routes, with `check_key(request, state)` guarding each of them."""

    def guarded(handler: Callable[[Request, Any, str], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Any:
            state = request.app.state.sim
            try:
                key = check_key(request, state)
                _scripted_fault(state)
                status, body = await handler(request, state, key)
            except SimError as err:
                state.counters.record_status(err.status)
                answer = payloads.to_json(error_body(err, "openai"))
                return BodyResponse(err.status, {**_headers(), **err.headers}, answer)
            state.counters.record_status(status)
            if isinstance(body, bytes):
                return BodyResponse(status, _headers(), body, b"application/octet-stream")
            return BodyResponse(status, _headers(), payloads.to_json(body))

        return endpoint

    return [
        Route("/v1/files", guarded(_upload), methods=["POST"]),
        Route("/v1/files/{file_id}", guarded(_file), methods=["GET"]),
        Route("/v1/files/{file_id}", guarded(_delete_file), methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", guarded(_file_content), methods=["GET"]),
        Route("/v1/batches", guarded(_create_batch), methods=["POST"]),
        Route("/v1/batches", guarded(_list_batches), methods=["GET"]),
        Route("/v1/batches/{batch_id}", guarded(_batch), methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", guarded(_cancel_batch), methods=["POST"]),
    ]


RETRY_AFTER_S = 0.2  # what a scripted 429 of the Files and Batch API asks to wait


def _scripted_fault(state: Any) -> None:
    """Raise the next `batch_route_script` fault, if the script has one left."""
    fault = state.batch_route_faults.popleft() if state.batch_route_faults else ""
    if fault == "429":
        raise SimError(
            429,
            "Rate limit reached for requests on the Batch API. Please try again shortly.",
            type="requests",
            code="rate_limit_exceeded",
            headers={
                "retry-after": f"{RETRY_AFTER_S:g}",
                "retry-after-ms": str(round(RETRY_AFTER_S * 1000)),
            },
        )
    if fault == "500":
        raise SimError(500, "The server had an error processing your request.", "server_error")


def _headers() -> dict[str, str]:
    return {"x-request-id": "req_" + os.urandom(16).hex(), "openai-version": "2020-10-01"}


async def _upload(request: Request, state: Any, key: str) -> tuple[int, Any]:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise SimError(400, "Uploads must be multipart/form-data with `file` and `purpose`.")
    raw = await request.body()
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    fields: dict[str, Any] = {}
    filename = "upload.jsonl"
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename() or filename
        fields[str(name)] = data
    if "file" not in fields:
        raise SimError(400, "Missing required parameter: 'file'.", param="file")
    purpose = fields.get("purpose", b"").decode()
    if purpose not in ("batch", "assistants", "fine-tune", "vision", "user_data", "evals"):
        raise SimError(400, f"Invalid value for 'purpose': {purpose!r}.", param="purpose")
    if "echo-key" in state.settings.batch_faults:
        raise SimError(
            500,
            f"upstream proxy error while forwarding 'Authorization: Bearer {key}'"
            f" (key {key} was not accepted upstream)",
            type="server_error",
        )
    state.counters.files_uploaded += 1
    return 200, state.batches.add_file(fields["file"], filename, purpose)


def _stored_file(state: Any, file_id: str) -> dict[str, Any]:
    entry: dict[str, Any] | None = state.batches.files.get(file_id)
    if entry is None:
        raise SimError(404, f"No such File object: {file_id}", param="id")
    return entry


async def _file(request: Request, state: Any, key: str) -> tuple[int, Any]:
    return 200, _stored_file(state, request.path_params["file_id"])


async def _delete_file(request: Request, state: Any, key: str) -> tuple[int, Any]:
    file_id = request.path_params["file_id"]
    if "files-read-only" in state.settings.batch_faults:
        raise SimError(
            403,
            "You have insufficient permissions for this operation. Missing scopes:"
            " api.files.write. Check that you have the correct role in your organization,"
            " and if you're using a restricted API key, that it has the necessary scopes.",
        )
    if not state.batches.delete_file(file_id):
        raise SimError(404, f"No such File object: {file_id}", param="id")
    state.counters.files_deleted += 1
    return 200, {"id": file_id, "object": "file", "deleted": True}


async def _file_content(request: Request, state: Any, key: str) -> tuple[int, Any]:
    file_id = request.path_params["file_id"]
    _stored_file(state, file_id)
    return 200, state.batches.contents[file_id]


async def _create_batch(request: Request, state: Any, key: str) -> tuple[int, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise SimError(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise SimError(400, "The body must be a JSON object.")
    file_id = body.get("input_file_id")
    if not isinstance(file_id, str):
        raise SimError(400, "Missing required parameter: 'input_file_id'.", param="input_file_id")
    entry = _stored_file(state, file_id)
    if entry["purpose"] != "batch":
        raise SimError(
            400, f"File {file_id} was not uploaded with purpose 'batch'.", param="input_file_id"
        )
    if body.get("endpoint") != BATCH_ENDPOINT:
        raise SimError(
            400,
            f"Invalid value for 'endpoint': {body.get('endpoint')!r}; the simulator serves"
            f" {BATCH_ENDPOINT}.",
            param="endpoint",
        )
    if body.get("completion_window") != "24h":
        raise SimError(
            400,
            f"Invalid value for 'completion_window': {body.get('completion_window')!r}; only"
            " '24h' is supported.",
            param="completion_window",
        )
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise SimError(400, "'metadata' must be an object of strings.", param="metadata")
    settings = state.settings
    job: Job = state.batches.create(
        key,
        file_id,
        metadata,
        tuple(settings.batch_faults),
        settings.batch_duration_s,
        state.batch_prompt_tokens,
        settings.batch_enqueued_token_limit,
    )
    state.counters.batches_created += 1
    return 200, state.batches.body(job)


def _job(request: Request, state: Any) -> Job:
    batch_id = request.path_params["batch_id"]
    job: Job | None = state.batches.jobs.get(batch_id)
    if job is None:
        raise SimError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
    settings = state.settings
    state.batches.refresh(
        job, state.answer_batch_line, settings.batch_duration_s, settings.batch_faults
    )
    return job


async def _batch(request: Request, state: Any, key: str) -> tuple[int, Any]:
    return 200, state.batches.body(_job(request, state))


async def _cancel_batch(request: Request, state: Any, key: str) -> tuple[int, Any]:
    job = _job(request, state)
    state.batches.cancel(job)
    return 200, state.batches.body(job)


async def _list_batches(request: Request, state: Any, key: str) -> tuple[int, Any]:
    store = state.batches
    jobs = sorted(store.jobs.values(), key=lambda j: (j.started, j.id), reverse=True)
    after = request.query_params.get("after")
    if after is not None:
        ids = [j.id for j in jobs]
        jobs = jobs[ids.index(after) + 1 :] if after in ids else []
    try:
        limit = max(1, min(100, int(request.query_params.get("limit", "20"))))
    except ValueError:
        raise SimError(400, "Invalid 'limit': expected an integer.", param="limit") from None
    page = jobs[:limit]
    for job in page:
        settings = state.settings
        store.refresh(
            job, state.answer_batch_line, settings.batch_duration_s, settings.batch_faults
        )
    data = [store.body(job) for job in page]
    return 200, {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(jobs) > limit,
    }
