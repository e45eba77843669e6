"""The Batch API of the simulator: uploaded files and batches that progress with time.

A batch goes `validating` -> `in_progress` -> `finalizing` -> `completed` over
`batch_duration_s` seconds (the real API's up to 24 hours, shrunk): validating for the
first 10%, its lines answered one after the other until 80%, finalizing until 100%.
Each line is answered with the same logic as `/v1/chat/completions` (`answer`), and
the answers go to an output file and an error file in the real API's line format.
`batch_faults` makes every new batch fail validation, expire half-way, fail some of
its lines, write its output in another order than its input, or break its result
files (malformed or repeated lines, a line in both files, a line of another batch, an
output file that is gone), or stay `in_progress` for as long as `stuck` is set.

Example:
    >>> store = BatchStore()
    >>> file = store.add_file(b'{"custom_id": "a"}\\n', "in.jsonl", "batch")
    >>> file["bytes"], file["purpose"]
    (19, 'batch')
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BATCH_ENDPOINT = "/v1/chat/completions"
BATCH_FAULTS = (
    "validation-failed",
    "expire",
    "line-errors",
    "shuffle",
    "stuck",
    "missing-output",
    "malformed-lines",
    "duplicate-lines",
    "output-and-error",
    "foreign-ids",
    "echo-key",
    "files-read-only",
)
MAX_BATCH_LINES = 50_000
MAX_FILE_BYTES = 200 * 1024 * 1024
LINE_ERROR_EVERY = 10  # a `line-errors` batch fails input lines 1, 11, 21, ...
_VALIDATING, _ANSWERING, _FINALIZING = 0.1, 0.8, 1.0  # ends of the stages, as a share of time
_EXPIRE_AT = 0.5
# answer(api_key, request body) -> (HTTP status, response body, prompt tokens)
LineAnswer = Callable[[str, dict[str, Any]], tuple[int, dict[str, Any], int]]


def _new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


@dataclass
class Job:
    """One batch and what became of it."""

    id: str
    key: str
    input_file_id: str
    metadata: dict[str, str] | None
    lines: list[bytes]  # the valid input lines as uploaded, parsed when answered; let go
    # once the batch has ended (its answers are in its result files)
    model: str | None
    errors: list[dict[str, Any]] | None
    faults: tuple[str, ...]
    duration_s: float
    started: float = field(default_factory=time.monotonic)
    created_at: int = field(default_factory=lambda: int(time.time()))
    status: str = "validating"
    cancel_at: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed: int = 0
    failed: int = 0
    stamps: dict[str, int] = field(default_factory=dict)
    enqueued_tokens: int = 0
    total: int = 0  # the number of valid input lines (also once `lines` is let go)

    def line(self, index: int) -> dict[str, Any]:
        """Input line `index`, parsed."""
        parsed: dict[str, Any] = json.loads(self.lines[index])
        return parsed

    def share(self, now: float) -> float:
        """How far along the batch is, as a share of its duration."""
        return (now - self.started) / self.duration_s if self.duration_s > 0 else 1.0

    def lines_done(self, share: float) -> int:
        """Lines answered by `share` of the duration."""
        answering = (share - _VALIDATING) / (_ANSWERING - _VALIDATING)
        return max(0, min(self.total, int(self.total * answering)))


class FileContents:
    """The bytes of every stored file, on disk in a temporary folder (removed with the
    store): a million-record night uploads and downloads gigabytes, which memory would
    have to hold for as long as the simulator runs.

    Example:
        >>> contents = FileContents()
        >>> contents["file-1"] = b"line\\n"
        >>> contents["file-1"], "file-1" in contents, "file-2" in contents
        (b'line\\n', True, False)
    """

    def __init__(self) -> None:
        self._folder: Path | None = None  # made with the first file: most simulators have none
        self._ids: set[str] = set()

    @property
    def folder(self) -> Path:
        """The folder of the files, removed when the store is collected or at exit."""
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="simulator-files-"))
            weakref.finalize(self, shutil.rmtree, self._folder, True)
        return self._folder

    def __setitem__(self, file_id: str, data: bytes) -> None:
        (self.folder / file_id).write_bytes(data)
        self._ids.add(file_id)

    def __getitem__(self, file_id: str) -> bytes:
        if file_id not in self._ids:
            raise KeyError(file_id)
        return (self.folder / file_id).read_bytes()

    def __contains__(self, file_id: object) -> bool:
        return file_id in self._ids

    def __delitem__(self, file_id: str) -> None:
        self._ids.remove(file_id)
        (self.folder / file_id).unlink(missing_ok=True)


class BatchStore:
    """Files and batches of one simulator (kept across `reset()`, like the real account)."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, Any]] = {}
        self.contents = FileContents()
        self.jobs: dict[str, Job] = {}
        self.created = 0

    # --- files ---

    def add_file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        """Store an uploaded (or produced) file; its file object."""
        file_id = _new_id("file-")
        entry: dict[str, Any] = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": None,
        }
        self.files[file_id] = entry
        self.contents[file_id] = data
        return entry

    def delete_file(self, file_id: str) -> bool:
        """Remove a file and its content; False when there is no such file."""
        if self.files.pop(file_id, None) is None:
            return False
        del self.contents[file_id]
        return True

    # --- batches ---

    def create(
        self,
        key: str,
        input_file_id: str,
        metadata: dict[str, str] | None,
        faults: tuple[str, ...],
        duration_s: float,
        count_tokens: Callable[[dict[str, Any]], int],
        enqueued_limit: int | None,
    ) -> Job:
        """A new batch over the lines of `input_file_id` (already checked to exist)."""
        lines, model, errors = _parse_lines(self.contents[input_file_id])
        job = Job(
            id=_new_id("batch_"),
            key=key,
            input_file_id=input_file_id,
            metadata=metadata,
            lines=lines,
            total=len(lines),
            model=model,
            errors=errors,
            faults=faults,
            duration_s=duration_s,
        )
        if not errors and "validation-failed" in faults:
            job.errors = [
                {
                    "code": "invalid_request",
                    "message": "The simulator was told to fail this batch's validation"
                    " (batch_faults: validation-failed).",
                    "param": None,
                    "line": 1,
                }
            ]
        if not job.errors and enqueued_limit is not None:
            job.enqueued_tokens = sum(
                count_tokens(job.line(index)["body"]) for index in range(len(lines))
            )
            queued = sum(
                other.enqueued_tokens
                for other in self.jobs.values()
                if other.model == model and other.status in ("validating", "in_progress")
            )
            if queued + job.enqueued_tokens > enqueued_limit:
                job.enqueued_tokens = 0
                job.errors = [
                    {
                        "code": "token_limit_exceeded",
                        "message": f"Enqueued token limit reached for {model} in organization"
                        f" org-simulator. Limit: {enqueued_limit:,} enqueued tokens. Please try"
                        " again once some in_progress batches have been completed.",
                        "param": None,
                        "line": None,
                    }
                ]
        self.jobs[job.id] = job
        self.created += 1
        return job

    def cancel(self, job: Job) -> None:
        """Ask `job` to stop: `cancelling`, then `cancelled` with what was answered so far."""
        if job.status in ("validating", "in_progress", "finalizing") and job.cancel_at is None:
            job.cancel_at = time.monotonic()
            job.status = "cancelling"
            job.stamps["cancelling_at"] = int(time.time())

    def refresh(
        self,
        job: Job,
        answer: LineAnswer,
        duration_s: float | None = None,
        live_faults: tuple[str, ...] | list[str] | None = None,
    ) -> None:
        """Move `job` along its stages by the time passed; answer its lines when it ends.

        `duration_s` (the live `batch_duration_s`) replaces the job's own duration, so a
        test can speed up a batch that is already running. A `stuck` batch stays
        `in_progress` (or `cancelling`) while `live_faults` (the live `batch_faults`) still
        holds `stuck`: a test can release it.
        """
        if job.status in ("completed", "failed", "expired", "cancelled"):
            return
        if duration_s is not None:
            job.duration_s = duration_s
        now = time.monotonic()
        share = job.share(now)
        if job.errors is not None:
            if share >= _VALIDATING:
                job.status = "failed"
                job.stamps["failed_at"] = int(time.time())
            return
        if "stuck" in job.faults and (live_faults is None or "stuck" in live_faults):
            job.stamps.setdefault("in_progress_at", int(time.time()))
            job.status = "in_progress" if job.cancel_at is None else "cancelling"
            return
        if job.cancel_at is not None:
            if now - job.cancel_at >= _VALIDATING * job.duration_s:
                self._finish(job, job.lines_done(job.share(job.cancel_at)), answer, "cancelled")
            return
        if "expire" in job.faults and share >= _EXPIRE_AT:
            self._finish(job, job.lines_done(_EXPIRE_AT), answer, "expired")
            return
        if share < _VALIDATING:
            return
        job.stamps.setdefault("in_progress_at", int(time.time()))
        job.status = "in_progress"
        job.completed = job.lines_done(share)
        if share >= _ANSWERING:
            job.status = "finalizing"
            job.stamps.setdefault("finalizing_at", int(time.time()))
        if share >= _FINALIZING:
            self._finish(job, job.total, answer, "completed")

    def _finish(self, job: Job, done: int, answer: LineAnswer, status: str) -> None:
        order = list(range(job.total))
        if "shuffle" in job.faults:
            random.Random(job.id).shuffle(order)
        outputs: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for position, index in enumerate(order):
            line = job.line(index)
            row: dict[str, Any] = {"id": _new_id("batch_req_"), "custom_id": line["custom_id"]}
            if position >= done:
                code = "batch_expired" if status == "expired" else "batch_cancelled"
                message = (
                    "This request could not be executed before the completion window expired."
                    if status == "expired"
                    else "This request was not executed because the batch was cancelled."
                )
                errors.append(
                    {**row, "response": None, "error": {"code": code, "message": message}}
                )
                continue
            if "line-errors" in job.faults and index % LINE_ERROR_EVERY == 0:
                body, status_code = _SERVER_ERROR, 500
            else:
                status_code, body, _ = answer(job.key, line["body"])
            response = {"status_code": status_code, "request_id": _new_id("req_"), "body": body}
            (outputs if status_code == 200 else errors).append(
                {**row, "response": response, "error": None}
            )
        job.completed = len(outputs)
        job.failed = len(errors)
        _break_results(job, outputs, errors, answer)
        if outputs:
            job.output_file_id = self._result_file(job, outputs, "output")
        if errors:
            job.error_file_id = self._result_file(job, errors, "error")
        if "missing-output" in job.faults:
            job.output_file_id = _new_id("file-")  # a file that answers 404
        job.lines = []  # answered: a million-line night keeps its lines in its result files
        job.status = status
        job.stamps[f"{status}_at"] = int(time.time())
        if status == "completed":
            job.stamps.setdefault("finalizing_at", int(time.time()))

    def _result_file(self, job: Job, rows: list[dict[str, Any]], kind: str) -> str:
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode()
        return str(self.add_file(data, f"{job.id}_{kind}.jsonl", "batch_output")["id"])

    def body(self, job: Job) -> dict[str, Any]:
        """The batch object as the API returns it."""
        stamps = job.stamps
        return {
            "id": job.id,
            "object": "batch",
            "endpoint": BATCH_ENDPOINT,
            "errors": None if job.errors is None else {"object": "list", "data": job.errors},
            "input_file_id": job.input_file_id,
            "completion_window": "24h",
            "status": job.status,
            "output_file_id": job.output_file_id,
            "error_file_id": job.error_file_id,
            "created_at": job.created_at,
            "in_progress_at": stamps.get("in_progress_at"),
            "expires_at": job.created_at + 24 * 3600,
            "finalizing_at": stamps.get("finalizing_at"),
            "completed_at": stamps.get("completed_at"),
            "failed_at": stamps.get("failed_at"),
            "expired_at": stamps.get("expired_at"),
            "cancelling_at": stamps.get("cancelling_at"),
            "cancelled_at": stamps.get("cancelled_at"),
            "request_counts": {
                "total": 0 if job.errors is not None else job.total,
                "completed": job.completed,
                "failed": job.failed,
            },
            "metadata": job.metadata,
        }


def _break_results(
    job: Job, outputs: list[dict[str, Any]], errors: list[dict[str, Any]], answer: LineAnswer
) -> None:
    """The result-file faults of `job`, applied to its output and error rows in place."""
    faults, by_id = job.faults, {row["custom_id"]: row for row in outputs}
    ids = [job.line(index)["custom_id"] for index in range(min(3, job.total))]
    first = by_id.get(ids[0]) if ids else None
    if "malformed-lines" in faults:
        if first is not None:  # line 1: a `response` that is a string
            first["response"] = "<html><body>502 Bad Gateway</body></html>"
        second = by_id.get(ids[1]) if len(ids) > 1 else None
        if second is not None:  # line 2: an `error` that is a string, in the error file
            outputs.remove(second)
            errors.append({**second, "response": None, "error": "upstream failure"})
    if "duplicate-lines" in faults and len(ids) > 2:
        other = job.line(1)["body"]  # line 1 again, with line 2's answer: a wrong value
        status, body, _ = answer(job.key, other)
        response = {"status_code": status, "request_id": _new_id("req_"), "body": body}
        outputs.append({"id": _new_id("batch_req_"), "custom_id": ids[0], "response": response})
        third = by_id.get(ids[2])
        if third is not None:  # line 3 twice, with the same answer
            outputs.append({**third, "id": _new_id("batch_req_")})
    if "output-and-error" in faults and first is not None:  # line 1 answered and failed
        failed = {"status_code": 500, "request_id": _new_id("req_"), "body": _SERVER_ERROR}
        errors.append({**first, "id": _new_id("batch_req_"), "response": failed})
    if "foreign-ids" in faults and first is not None:  # a line this batch was never sent
        outputs.append({**first, "id": _new_id("batch_req_"), "custom_id": _new_id("foreign-")})


_SERVER_ERROR = {
    "error": {
        "message": "The server had an error while processing your request.",
        "type": "server_error",
        "param": None,
        "code": None,
    }
}


def _parse_lines(
    data: bytes,
) -> tuple[list[bytes], str | None, list[dict[str, Any]] | None]:
    """The valid lines of a batch input file (as bytes: a million parsed lines would not
    fit), its model, and the validation errors (None: valid)."""
    errors: list[dict[str, Any]] = []
    lines: list[bytes] = []
    seen: set[str] = set()
    models: set[str] = set()

    def error(number: int, code: str, message: str, param: str | None = None) -> None:
        errors.append({"code": code, "message": message, "param": param, "line": number})

    if len(data) > MAX_FILE_BYTES:
        error(1, "file_too_large", f"The input file has {len(data)} bytes; the limit is 200 MB.")
    raw_lines = [line for line in data.splitlines() if line.strip()]
    if len(raw_lines) > MAX_BATCH_LINES:
        error(
            1,
            "too_many_requests",
            f"The input file has {len(raw_lines)} requests; a batch holds at most 50,000.",
        )
    if not raw_lines:
        error(1, "empty_file", "The input file holds no requests.")
    for number, raw in enumerate(raw_lines, start=1):
        try:
            line = json.loads(raw)
        except ValueError:
            error(number, "invalid_json_line", "This line is not parseable as valid JSON.")
            continue
        if not isinstance(line, dict):
            error(number, "invalid_json_line", "This line is not a JSON object.")
            continue
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            error(number, "missing_required_parameter", "Missing 'custom_id'.", "custom_id")
            continue
        if custom_id in seen:
            error(
                number,
                "duplicate_custom_id",
                f"The custom_id '{custom_id}' is used on more than one line.",
                "custom_id",
            )
        seen.add(custom_id)
        if line.get("method") != "POST":
            error(number, "invalid_value", "The method must be 'POST'.", "method")
        if line.get("url") != BATCH_ENDPOINT:
            error(
                number,
                "mismatched_endpoint",
                f"The url {line.get('url')!r} is not the batch's endpoint {BATCH_ENDPOINT}.",
                "url",
            )
        body = line.get("body")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            error(number, "missing_required_parameter", "Missing 'body.model'.", "body.model")
            continue
        models.add(body["model"])
        lines.append(bytes(raw))
    if len(models) > 1:
        error(1, "mismatched_model", "A batch input file must use one model on every line.")
    return lines, next(iter(models), None), errors or None
