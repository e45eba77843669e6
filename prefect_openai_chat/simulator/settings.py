"""Settings of the simulator: one pydantic model, overridable per instance, per profile and live.

Example:
    >>> from prefect_openai_chat.simulator import SimulatorSettings
    >>> SimulatorSettings(seed=7, fault_rates={"503": 0.1}).fault_rates
    {'503': 0.1}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from prefect_openai_chat.simulator.faults import FAULTS, parse_fault_list
from prefect_openai_chat.simulator.scripted import ScriptedAnswer

ErrorFormat = Literal["openai", "vllm", "ollama"]


class OutageWindow(BaseModel):
    """A window during which every chat request fails, by time or by request count.

    Time offsets count from the start of the simulator, its last `reset()`, or the
    last `configure(outages=...)`; request indexes count chat requests (from 0) from
    the same moment. A window with both bounds of one kind unset is open-ended.

    Example:
        >>> OutageWindow(start_s=1.0, end_s=3.0, mode="refuse").active(2.0, 0)
        True
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    start_s: float | None = Field(default=None, ge=0, description="Seconds after the clock start.")
    end_s: float | None = Field(
        default=None, ge=0, description="Seconds after the clock start (excl)."
    )
    from_request: int | None = Field(
        default=None, ge=0, description="First request index in the window."
    )
    to_request: int | None = Field(
        default=None, ge=0, description="Request index that ends it (excl)."
    )
    mode: Literal["refuse", "503"] = Field(
        default="503", description="`refuse` resets the connection at once; `503` answers 503."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> OutageWindow:
        by_time = self.start_s is not None or self.end_s is not None
        by_count = self.from_request is not None or self.to_request is not None
        if by_time and by_count:
            raise ValueError(
                "an outage window is either by time (start_s/end_s) or by request count"
            )
        return self

    def active(self, elapsed_s: float, request_index: int) -> bool:
        """True when a request at `elapsed_s` with index `request_index` falls in the window."""
        if self.from_request is not None or self.to_request is not None:
            low, high, at = self.from_request, self.to_request, float(request_index)
        else:
            low, high, at = self.start_s, self.end_s, elapsed_s  # type: ignore[assignment]
        return (low is None or at >= low) and (high is None or at < high)


class SimulatorSettings(BaseModel):
    """Everything that shapes the simulator's behaviour.

    Example:
        >>> SimulatorSettings(rpm=60, time_scale=60.0).rpm
        60
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(default=0, description="Seeds the fault draws and the answers' content.")
    api_keys: list[str] = Field(
        default_factory=lambda: ["sk-simulator"],
        description="Keys accepted in `Authorization: Bearer ...`; others get 401.",
    )
    expiring_tokens: bool = Field(
        default=False,
        description="Also accept bearer tokens made by `simulator.azure.issue_token` until their"
        " expiry (Entra ID tokens); past it, 401 like Azure.",
    )
    token_lifetime_s: float = Field(
        default=3600.0,
        gt=0,
        description="Life of the tokens the managed identity endpoint"
        " (`/_simulator/managed-identity/token`) issues.",
    )
    fault_rates: dict[str, float] = Field(
        default_factory=dict, description="Probability of each fault per request."
    )
    script: list[str] = Field(
        default_factory=list,
        description="Request i gets fault script[i] ('ok' = none); afterwards normal behaviour.",
    )
    outages: list[OutageWindow] = Field(default_factory=list, description="Outage windows.")
    rpm: int | None = Field(
        default=None, gt=0, description="Requests per minute per key (None: no limit)."
    )
    tpm: int | None = Field(
        default=None, gt=0, description="Tokens per minute per key (None: no limit)."
    )
    time_scale: float = Field(
        default=1.0, gt=0, description="60.0 makes a rate-limit minute last 1 s."
    )
    ttft_s: float = Field(
        default=0.0, ge=0, description="Latency before the first token, in seconds."
    )
    tokens_per_s: float | None = Field(
        default=None, gt=0, description="Generation speed (None: instant)."
    )
    error_format: ErrorFormat = Field(
        default="openai", description="Error body shape: openai|vllm|ollama."
    )
    reprompt_failure_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Chance that a re-prompt gets a faulty JSON answer again.",
    )
    hang_s: float = Field(default=30.0, ge=0, description="Longest hang; ends early on disconnect.")
    stall_s: float = Field(
        default=30.0, ge=0, description="How long a stalled stream stays silent."
    )
    retry_after_s: float = Field(default=1.0, ge=0, description="retry-after of an injected 429.")
    extra_models: dict[str, int] = Field(
        default_factory=dict, description="More model names served, with their context window."
    )
    allow_fault_header: bool = Field(
        default=True, description="Honour the `x-simulator-fault` header."
    )
    prompt_caching: bool = Field(
        default=True,
        description="Report a recently seen prompt prefix of >= 1,024 tokens as cached tokens.",
    )
    prompt_cache_ttl_s: float = Field(
        default=300.0, gt=0, description="How long a prompt prefix stays cached after its use."
    )
    batch_duration_s: float = Field(
        default=2.0,
        ge=0,
        description="Seconds a batch takes from creation to `completed` (the real API: hours).",
    )
    batch_faults: list[str] = Field(
        default_factory=list,
        description="Faults of every new batch (simulator.batches.BATCH_FAULTS).",
    )
    batch_route_script: list[Literal["", "429", "500"]] = Field(
        default_factory=list,
        description="What the next Files and Batch API requests answer, one entry each, in order"
        " (set anew by each configure): '429' rate_limit_exceeded with Retry-After, '500' a"
        " server error, '' the normal answer; once it is used up, every request is answered.",
    )
    batch_enqueued_token_limit: int | None = Field(
        default=None,
        gt=0,
        description="Prompt tokens a model may have in unfinished batches (None: no limit).",
    )
    refuse_streams: bool = Field(
        default=False,
        description="Answer every streamed request 400, as a model or proxy without"
        " streaming does.",
    )
    refusal_text: str | None = Field(
        default=None,
        description="What the `refusal` fault says (None: a one-line apology); a long text"
        " tests the caps on reasons.",
    )
    answers: dict[str, ScriptedAnswer] = Field(
        default_factory=dict,
        description="Marker -> answer: a request whose record text contains the marker gets"
        " exactly that content (or refusal); see simulator/scripted.py.",
    )
    request_log: str | None = Field(
        default=None,
        description="A JSONL file to append every chat request to (index, time, status,"
        " faults, body); None: no log.",
    )

    @field_validator("fault_rates")
    @classmethod
    def _check_rates(cls, rates: dict[str, float]) -> dict[str, float]:
        for name, rate in rates.items():
            if name not in FAULTS:
                raise ValueError(f"unknown fault {name!r}; known faults: {', '.join(FAULTS)}")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate of {name!r} must be in [0, 1], got {rate}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to {sum(rates.values()):.3f}, more than 1")
        return rates

    @field_validator("script")
    @classmethod
    def _check_script(cls, script: list[str]) -> list[str]:
        for entry in script:
            parse_fault_list(entry)  # raises ValueError naming the bad fault
        return script

    @field_validator("batch_faults")
    @classmethod
    def _check_batch_faults(cls, faults: list[str]) -> list[str]:
        from prefect_openai_chat.simulator.batches import BATCH_FAULTS

        for name in faults:
            if name not in BATCH_FAULTS:
                raise ValueError(
                    f"unknown batch fault {name!r}; known batch faults: {', '.join(BATCH_FAULTS)}"
                )
        return faults

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, keys: list[str]) -> list[str]:
        if not keys:
            raise ValueError("api_keys must hold at least one key")
        return keys

    def with_overrides(self, **overrides: Any) -> SimulatorSettings:
        """Return a copy with `overrides` applied and validated."""
        data = self.model_dump()
        data.update(overrides)
        return SimulatorSettings.model_validate(data)
