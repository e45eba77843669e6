"""What a chat call needs to know, frozen: the Prefect-free view of a `ChatModel` block.

Example:
    >>> from prefect_openai_chat.chat.settings import ChatSettings
    >>> ChatSettings(model="gpt-4o-mini").request_defaults()
    {}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from prefect_openai_chat.tokens.context import ContextStrategy
from prefect_openai_chat.tokens.prices import Price

ContentFilterMode = Literal["raise", "flag"]
OPENAI_BASE_URL = "https://api.openai.com/v1"  # where calls go when no base URL is set


@dataclass(frozen=True)
class ChatSettings:
    """Model, generation defaults and outcome handling for one endpoint."""

    model: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    content_filter: ContentFilterMode = "raise"
    safe_message: str = "This content was withheld by the provider's content filter."
    prices: Mapping[str, Price] | None = None
    context_strategy: ContextStrategy = "fail"
    context_window: int | None = None
    base_url: str = OPENAI_BASE_URL
    name: str = "primary"
    attempt_timeout_s: float | None = None  # one HTTP attempt, every read included
    call_timeout_s: float | None = None  # the whole logical call, retries included

    def request_defaults(self) -> dict[str, Any]:
        """Generation parameters that are set (None means: leave it to the API)."""
        return {k: v for k, v in self.defaults.items() if v is not None}
