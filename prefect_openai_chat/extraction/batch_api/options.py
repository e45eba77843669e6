"""How a run through the OpenAI Batch API behaves (`BatchApiOptions`), every field with a
sensible default, checked when the options are made.

Example:
    >>> BatchApiOptions.from_mapping({"poll_interval_s": 5, "reask": "online"}).reask
    'online'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError

from prefect_openai_chat.checked_model import CheckedModel
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction.batch_api.lines import MAX_BATCH_BYTES, MAX_BATCH_REQUESTS

COMPLETION_WINDOW_S = 24 * 3600.0
DEADLINE_MARGIN_S = 3600.0


class BatchApiOptions(CheckedModel):
    """How a run through the OpenAI Batch API behaves; every field has a sensible default.

    Attributes:
        poll_interval_s: Seconds between two looks at a running batch.
        reask: Where re-asks, retries with more room and failed lines go: `batch` (the
            default: a follow-up batch at the batch price, one batch round-trip per
            round, up to `max_rounds`) or `online` (at once, at the online price).
        unfinished: What becomes of records an expired or cancelled batch did not
            answer: `resubmit` them in a new batch, or `quarantine` them.
        enqueued_token_limit: The model's enqueued-token limit (prompt tokens in
            unfinished batches); None: no waves.
        max_requests: Requests per batch (the API's limit: 50,000).
        max_bytes: Bytes per batch input file (the API's limit: 200 MB).
        max_rounds: Batch rounds at most; what still needs a call then goes online.
        deadline_s: Seconds from a batch's creation after which a batch that has not
            ended is cancelled and its records are treated as unfinished (the
            completion window, 24 h, plus an hour).
        keep_files: Keep the night's input and result files in the account's storage
            (False, the default: they are deleted once every record has ended).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    poll_interval_s: float = Field(default=30.0, gt=0)
    reask: Literal["online", "batch"] = "batch"
    unfinished: Literal["resubmit", "quarantine"] = "resubmit"
    enqueued_token_limit: int | None = None
    max_requests: int = MAX_BATCH_REQUESTS
    max_bytes: int = MAX_BATCH_BYTES
    max_rounds: int = Field(default=4, ge=1)
    deadline_s: float = Field(default=COMPLETION_WINDOW_S + DEADLINE_MARGIN_S, gt=0)
    keep_files: bool = False

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | BatchApiOptions | None) -> BatchApiOptions:
        """Options from a dict, with a clear error for an unknown name or a bad value."""
        if isinstance(options, BatchApiOptions):
            return options
        known = set(cls.model_fields)
        unknown = set(options or {}) - known
        if unknown:
            raise InvalidInputError(
                f"unknown batch option(s) {sorted(unknown)}; known: {sorted(known)}"
            )
        try:
            return cls(**dict(options or {}))
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(part) for part in first["loc"])
            raise InvalidInputError(
                f"batch option {name}: {first['msg']} (got {first.get('input')!r})"
            ) from None
