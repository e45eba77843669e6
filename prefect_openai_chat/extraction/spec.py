"""`ExtractionSpec`: what to extract from each record, checked once when it is made.

The schema, the prompt template, the instructions, the mode, the re-asks, the token
budget and the key field: everything that decides a record's answer (and so its
ledger key), apart from the chat model and the record itself. Every check that needs
only these (the schema imports and is a pydantic model, the template is well formed,
the mode is known, the numbers make sense) runs here, on construction; the checks
against a source's records run in the flow's pre-flight.

A plain pydantic model: Prefect shows it as a form in the UI, and a deployment passes
it as JSON, with the schema as its import path.

Example:
    >>> from prefect_openai_chat.extraction.spec import ExtractionSpec
    >>> spec = ExtractionSpec(
    ...     schema="prefect_openai_chat.examples.tickets:SupportTicket",
    ...     prompt="Subject: {subject}\\n\\n{body}",
    ...     key_field="ticket_id",
    ... )
    >>> spec.schema_class.__name__, spec.mode
    ('SupportTicket', 'auto')
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    field_serializer,
    model_validator,
)

from prefect_openai_chat.checked_model import CheckedModel
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction import templates
from prefect_openai_chat.extraction.options import ExtractionOptions

Mode = Literal["auto", "json_schema", "json_object", "tools"]

SchemaField = Annotated[
    Any,
    WithJsonSchema(
        {
            "type": "string",
            "title": "Schema",
            "description": "The pydantic model to extract, as its import path"
            " 'package.module:Model' (in Python, the class itself).",
        }
    ),
]


def resolve_schema(schema: type[BaseModel] | str) -> type[BaseModel]:
    """A pydantic model, given itself or an import path such as `"pkg.module:Model"`.

    Example:
        >>> resolve_schema("prefect_openai_chat.examples.tickets:SupportTicket").__name__
        'SupportTicket'
    """
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema
    if not isinstance(schema, str) or ":" not in schema:
        raise InvalidInputError(
            "schema must be a pydantic model or an import path 'package.module:Model',"
            f" got {schema!r}"
        )
    module_name, _, attribute = schema.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInputError(
            f"schema {schema!r}: module {module_name!r} cannot be imported ({exc})"
        ) from exc
    found = getattr(module, attribute, None)
    if found is None:
        raise InvalidInputError(
            f"schema {schema!r}: {module_name!r} has no attribute {attribute!r}"
        )
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise InvalidInputError(
            f"schema {schema!r} is a {type(found).__name__}, not a pydantic model"
        )
    return found


def schema_path(schema: type[BaseModel] | str) -> str | None:
    """The import path a worker resolves back to `schema`, or None when there is none.

    Example:
        >>> from prefect_openai_chat.examples.tickets import SupportTicket
        >>> schema_path(SupportTicket)
        'prefect_openai_chat.examples.tickets:SupportTicket'
    """
    if isinstance(schema, str):
        return schema
    path = f"{schema.__module__}:{schema.__qualname__}"
    try:
        return path if resolve_schema(path) is schema else None
    except InvalidInputError:
        return None


with warnings.catch_warnings():  # a field called `schema`, as users expect, is harmless
    warnings.filterwarnings("ignore", message='Field name "schema"', category=UserWarning)

    class ExtractionSpec(CheckedModel):
        """What to extract from each record; checked when made (`InvalidInputError` says
        what to fix)."""

        model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

        schema: SchemaField = Field(
            description="The pydantic model to extract, or its import path 'package.module:Model'."
        )
        prompt: str | None = Field(
            default=None,
            description="A str.format template over a record's fields, e.g."
            " 'Subject: {subject}\\n\\n{body}'; None: each record is a text, sent as it is.",
        )
        instructions: str | None = Field(default=None, description="What to extract, in words.")
        mode: Mode = Field(
            default="auto", description="How the answer is asked for: auto picks per model."
        )
        max_reprompts: int = Field(
            default=2, ge=0, description="Re-asks after an invalid answer, per record."
        )
        token_budget: int | None = Field(
            default=None,
            ge=1,
            description="Most tokens to spend on one record over all its attempts.",
        )
        key_field: str | None = Field(
            default=None,
            description="The record field that names it in outputs and reports (else its"
            " position); a key seen before sends the later record to quarantine.",
        )
        _schema_class: type[BaseModel] = PrivateAttr()

        @model_validator(mode="after")
        def _check(self) -> ExtractionSpec:
            self._schema_class = resolve_schema(self.schema)
            if self.prompt is not None:
                templates.template_fields(self.prompt)  # a malformed one: PromptTemplateError
            return self

        @field_serializer("schema", when_used="json")
        def _schema_as_path(self, schema: Any) -> str:
            """The schema as JSON: its import path (its name when it has none)."""
            if isinstance(schema, str):
                return schema
            return schema_path(schema) or str(getattr(schema, "__qualname__", schema))

        @property
        def schema_class(self) -> type[BaseModel]:
            """The pydantic model, resolved from its import path when given one."""
            return self._schema_class

        def render(self, record: Mapping[str, Any] | str) -> str:
            """The text sent for a record: the prompt over its fields, or the text itself.

            A record that does not fit raises `RecordTemplateError` (that record is
            skipped, the others go on).
            """
            return templates.render(record, self.prompt)

        def options(
            self, model: str, max_completion_tokens: int | None, on_error: str = "raise"
        ) -> ExtractionOptions:
            """The extraction loop's options for `model`: the one place they are built."""
            return ExtractionOptions(
                model=model,
                instructions=self.instructions,
                mode=self.mode,
                max_reprompts=self.max_reprompts,
                token_budget=self.token_budget,
                max_completion_tokens=max_completion_tokens,
                on_error=on_error,  # type: ignore[arg-type]
            )

        def portable(self) -> ExtractionSpec:
            """This spec with the schema as its import path, for a deployment's JSON;
            refused when a worker could not import the schema."""
            if isinstance(self.schema, str):
                return self
            path = schema_path(self.schema_class)
            if path is None:
                name = self.schema_class.__qualname__
                raise InvalidInputError(
                    f"schema {name} cannot be imported by a worker; define it in an importable"
                    " module and pass its import path 'package.module:Model'"
                )
            return self.model_copy(update={"schema": path})
