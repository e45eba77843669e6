"""Prompt and request building, JSON parsing and repair, re-prompts, the extraction loop.

No Prefect here: the tasks in `prefect_openai_chat.tasks` call `run_extraction`
with a `call(messages, params) -> ChatResult` of their own.

Example:
    >>> from pydantic import BaseModel
    >>> from prefect_openai_chat.extraction import build_request
    >>> class City(BaseModel):
    ...     name: str
    >>> messages, params = build_request(City, "Oslo", model="gpt-4o-mini")
    >>> params["response_format"]["type"]
    'json_schema'
"""

from prefect_openai_chat.extraction.cache import extraction_cache_key
from prefect_openai_chat.extraction.engine import CallFn, run_extraction
from prefect_openai_chat.extraction.options import ExtractionOptions
from prefect_openai_chat.extraction.parsing import (
    ParseOutcome,
    answer_text,
    parse_output,
    parse_result,
    validate,
)
from prefect_openai_chat.extraction.prompts import (
    MODES,
    PROMPT_VERSION,
    build_request,
    resolve_mode,
)
from prefect_openai_chat.extraction.reprompt import (
    Problem,
    problems_from_error,
    reprompt_messages,
)
from prefect_openai_chat.extraction.schema import (
    SchemaSpec,
    ensure_model,
    response_format,
    schema_spec,
    schema_text,
    tool_definition,
)
from prefect_openai_chat.tokens.models import supports_structured_outputs  # the model table's

__all__ = [
    "MODES",
    "PROMPT_VERSION",
    "CallFn",
    "ExtractionOptions",
    "ParseOutcome",
    "Problem",
    "SchemaSpec",
    "answer_text",
    "build_request",
    "ensure_model",
    "extraction_cache_key",
    "parse_output",
    "parse_result",
    "problems_from_error",
    "reprompt_messages",
    "resolve_mode",
    "response_format",
    "run_extraction",
    "schema_spec",
    "schema_text",
    "supports_structured_outputs",
    "tool_definition",
    "validate",
]
