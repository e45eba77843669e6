"""The results the tasks return: plain pydantic models, safe to persist and cache.

Example:
    >>> from prefect_openai_chat.results import Usage
    >>> (Usage(prompt_tokens=10, completion_tokens=5) + Usage(prompt_tokens=1)).total_tokens
    16
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Usage(BaseModel):
    """Tokens billed for one or more calls."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

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
    attempts: int = 1
    answered_by: str = Field(
        default="primary", description="Which model answered: 'primary', a fallback, or 'static'."
    )
    flagged: bool = Field(
        default=False, description="True when a content filter stopped the answer."
    )


Outcome = Literal[
    "ok", "invalid", "truncated", "refused", "content_filter", "budget", "error", "skipped"
]


class Extraction(BaseModel, Generic[T]):
    """A validated value extracted from text, or why there is none, and what it cost."""

    value: T | None = None
    ok: bool = False
    outcome: Outcome = "error"
    reason: str | None = None
    attempts: int = 0
    retries: int = Field(default=0, description="In-call HTTP retries over every attempt.")
    repaired: bool = False
    reprompts: int = 0
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = None
    errors: list[str] = Field(default_factory=list)
    raw_outputs: list[str] = Field(default_factory=list)
    finish_reasons: list[str | None] = Field(default_factory=list)
    request_ids: list[str | None] = Field(default_factory=list)
    latency_s: float = 0.0


class RecordOutcome(BaseModel):
    """What became of one input record in a batch."""

    index: int
    key: str
    ok: bool
    value: dict[str, Any] | None = None
    outcome: Outcome = "error"
    reason: str | None = None
    attempts: int = 0
    retries: int = 0
    repaired: bool = False
    reprompts: int = 0
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = None
    latency_s: float = 0.0
    cached: bool = False
    last_raw_output: str | None = None
    via: Literal["online", "batch"] = Field(
        default="online", description="`batch` when the first answer came from the Batch API."
    )
    online_cost_usd: float | None = Field(
        default=None,
        description="What the same attempts would have cost online (None: the same as cost_usd).",
    )


class BatchReport(BaseModel):
    """Per-record outcomes of a batch and their totals."""

    records: list[RecordOutcome] = Field(default_factory=list)

    @property
    def total(self) -> int:
        """Records in the batch."""
        return len(self.records)

    @property
    def valid(self) -> int:
        """Records with a validated value."""
        return sum(r.ok for r in self.records)

    @property
    def failed(self) -> int:
        """Records that go to quarantine."""
        return self.total - self.valid

    @property
    def usage(self) -> Usage:
        """Tokens over every attempt of every record."""
        total = Usage()
        for record in self.records:
            total = total + record.usage
        return total

    @property
    def cost_usd(self) -> float | None:
        """Summed cost, or None when no record had a known price."""
        costs = [r.cost_usd for r in self.records if r.cost_usd is not None]
        return round(sum(costs), 10) if costs else None
