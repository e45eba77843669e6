"""The results the tasks return: plain pydantic models, safe to persist and cache.

Derived totals (`Usage.total_tokens`, `ChunkReport.valid`, ...) are computed fields:
they are in `model_dump()` and the JSON, and ignored when a dump is read back.

Two counts are named apart: `ChatResult.http_attempts` counts the HTTP requests of one
chat completion (in-call retries included); `Extraction.calls` counts the chat
completions an extraction made (first answer, re-asks, re-sends with more room).

The texts a record's outcome carries to the quarantine, the record ledger, artifacts and
events (`reason`, `last_raw_output`, and an `Extraction`'s `errors` and `raw_outputs`, which
Prefect persists as task results) pass the redaction boundary when the model is made:
known secrets, keys and bearer tokens are masked, a reason is kept to `REASON_LIMIT`
bytes and a raw answer to `RAW_OUTPUT_LIMIT`, each with a marker saying how much was cut.

Example:
    >>> from prefect_openai_chat.results import Usage
    >>> (Usage(prompt_tokens=10, completion_tokens=5) + Usage(prompt_tokens=1)).total_tokens
    16
    >>> Usage(prompt_tokens=2, completion_tokens=3).model_dump()["total_tokens"]
    5
"""

from __future__ import annotations

import warnings
from typing import Any, Generic, Literal, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    computed_field,
    field_validator,
)

from prefect_openai_chat.redaction import bounded_text

T = TypeVar("T")
S = TypeVar("S", bound="str | None")
REASON_LIMIT = 4 * 1024  # bytes of UTF-8 kept of a reason (a refusal may run to megabytes)
RAW_OUTPUT_LIMIT = 64 * 1024  # bytes of UTF-8 kept of a raw model answer


def bounded_reason(reason: S) -> S:
    """A reason as it may be kept: secrets masked, at most `REASON_LIMIT` bytes (and a marker).

    Example:
        >>> bounded_reason("x" * 5000)[4090:]
        'xxxxxx\\n[prefect-openai-chat: 904 more bytes cut; the reason had 5000 bytes]'
    """
    return bounded_text(reason, REASON_LIMIT, "the reason")


def bounded_raw_output(raw: S) -> S:
    """A raw answer as it may be kept: secrets masked, at most `RAW_OUTPUT_LIMIT` bytes."""
    return bounded_text(raw, RAW_OUTPUT_LIMIT, "the raw output")


class Usage(BaseModel):
    """Tokens billed for one or more calls."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
        )


class ToolCall(BaseModel):
    """One function call the model asked for; `arguments` is the raw JSON text."""

    id: str
    name: str
    arguments: str


class ChatResult(BaseModel):
    """One chat completion, with what it cost and how it was obtained."""

    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: str | None = None
    refusal: str | None = None
    model: str = ""
    system_fingerprint: str | None = None
    response_id: str | None = None
    request_id: str | None = None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = None
    latency_s: float = 0.0
    time_to_first_token_s: float | None = None
    http_attempts: int = Field(
        default=1,
        validation_alias=AliasChoices("http_attempts", "attempts"),
        description="HTTP requests sent for this completion, in-call retries included.",
    )
    http_429s: int = Field(
        default=0, description="Of those HTTP requests, the ones answered 429 (rate limit, quota)."
    )
    answered_by: str = Field(
        default="primary", description="Which model answered: 'primary', a fallback, or 'static'."
    )
    flagged: bool = Field(
        default=False, description="True when a content filter stopped the answer."
    )

    @property
    def attempts(self) -> int:
        """Deprecated name of `http_attempts`."""
        _renamed("ChatResult.attempts", "http_attempts")
        return self.http_attempts


Outcome = Literal[
    "ok", "invalid", "truncated", "refused", "content_filter", "budget", "error", "skipped"
]
# Outcomes the same inputs would reach again, so they are cached; errors (outages) are not.
FINAL_OUTCOMES = frozenset({"ok", "invalid", "truncated", "refused", "content_filter", "budget"})


def _renamed(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated; use {new}", DeprecationWarning, stacklevel=3)


class _Spent(BaseModel):
    """What one record's extraction did and cost: shared by `Extraction` and `RecordOutcome`."""

    ok: bool = False
    outcome: Outcome = "error"
    reason: str | None = None
    calls: int = Field(
        default=0,
        validation_alias=AliasChoices("calls", "attempts"),
        description="Chat completions made: the first answer, re-asks, re-sends with more room.",
    )
    retries: int = Field(default=0, description="In-call HTTP retries over every call.")
    http_429s: int = Field(
        default=0, description="HTTP 429 answers over every call (0 in older ledger entries)."
    )
    repaired: bool = False
    reprompts: int = 0
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = None
    latency_s: float = 0.0

    @field_validator("reason")
    @classmethod
    def _bounded_reason(cls, reason: str | None) -> str | None:
        return bounded_reason(reason)

    @property
    def attempts(self) -> int:
        """Deprecated name of `calls`."""
        _renamed(f"{type(self).__name__}.attempts", "calls")
        return self.calls


class Extraction(_Spent, Generic[T]):
    """A validated value extracted from text, or why there is none, and what it cost.

    Besides the fields shared with `RecordOutcome` (`ok`, `outcome`, `reason`, `calls`,
    `retries`, `http_429s`, `repaired`, `reprompts`, `usage`, `cost_usd`, `latency_s`), it
    keeps every call's errors, raw output, finish reason and request id.
    """

    value: T | None = None
    errors: list[str] = Field(default_factory=list)
    raw_outputs: list[str] = Field(default_factory=list)
    finish_reasons: list[str | None] = Field(default_factory=list)
    request_ids: list[str | None] = Field(default_factory=list)
    # `value` as JSON data, when the extraction dumped it already to check it is storable
    # (`answer_checks.dump_storable`): `record_outcome` takes it instead of dumping again.
    _value_data: dict[str, Any] | None = PrivateAttr(default=None)

    def value_data(self) -> dict[str, Any] | None:
        """`value` as JSON data (`model_dump(mode="json")`), dumped once; None without one."""
        if self._value_data is None and isinstance(self.value, BaseModel):
            self._value_data = self.value.model_dump(mode="json")
        return self._value_data

    @field_validator("errors")
    @classmethod
    def _bounded_errors(cls, errors: list[str]) -> list[str]:
        return [bounded_reason(error) for error in errors]

    @field_validator("raw_outputs")
    @classmethod
    def _bounded_raw_outputs(cls, raw_outputs: list[str]) -> list[str]:
        return [bounded_raw_output(raw) for raw in raw_outputs]


class RecordOutcome(_Spent):
    """What became of one input record in a chunk: an `Extraction`, made ready to write.

    `value` is the validated value as JSON data (`model.model_dump(mode="json")`): a
    chunk's outcomes are cached and persisted as JSON, whatever the schema. Rebuild the
    schema object with `Schema.model_validate(outcome.value)`. Of the extraction's
    lists only the last raw output is kept (`last_raw_output`).
    """

    index: int
    key: str
    ok: bool
    value: dict[str, Any] | None = None
    cached: bool = False
    last_raw_output: str | None = None
    via: Literal["online", "batch"] = Field(
        default="online", description="`batch` when the first answer came from the Batch API."
    )
    online_cost_usd: float | None = Field(
        default=None,
        description="What the same attempts would have cost online (None: the same as cost_usd).",
    )

    @field_validator("last_raw_output")
    @classmethod
    def _bounded_raw_output(cls, raw: str | None) -> str | None:
        return bounded_raw_output(raw)


class ChunkReport(BaseModel):
    """Per-record outcomes of an `extract_chunk` task (a chunk of records) and their totals."""

    records: list[RecordOutcome] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        """Records in the chunk."""
        return len(self.records)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def valid(self) -> int:
        """Records with a validated value."""
        return sum(r.ok for r in self.records)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failed(self) -> int:
        """Records that go to quarantine."""
        return self.total - self.valid

    @computed_field  # type: ignore[prop-decorator]
    @property
    def usage(self) -> Usage:
        """Tokens over every attempt of every record."""
        total = Usage()
        for record in self.records:
            total = total + record.usage
        return total

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cost_usd(self) -> float | None:
        """Summed cost, or None when no record had a known price."""
        costs = [r.cost_usd for r in self.records if r.cost_usd is not None]
        return round(sum(costs), 10) if costs else None


def __getattr__(name: str) -> Any:
    """`BatchReport`, the old name of `ChunkReport`, with a `DeprecationWarning`."""
    if name == "BatchReport":
        warnings.warn(
            "BatchReport is now ChunkReport (docs/migrating.md)", DeprecationWarning, stacklevel=2
        )
        return ChunkReport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
