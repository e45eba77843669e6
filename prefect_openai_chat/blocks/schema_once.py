"""A block's JSON schema made once per class, not again for every field of every save.

Prefect's `Block` (3.9) builds the class's whole JSON schema each time it asks whether a
field holds a secret (`Block._field_has_secrets`), and it asks for every field when it
saves or dumps a block: 75 schemas, about 0.3 s of CPU, per `ChatModel` save. The schema
depends only on the class and the arguments, so `SchemaOnce` keeps it and hands out a
copy (callers may change what they get).

Example:
    >>> from prefect_openai_chat import ChatModel
    >>> first, again = ChatModel.model_json_schema(), ChatModel.model_json_schema()
    >>> first == again and first is not again
    True
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Literal

from pydantic.json_schema import GenerateJsonSchema

if TYPE_CHECKING:
    from prefect.blocks.core import Block as _Base
else:
    _Base = object  # a mixin: only a `Block` subclass's bases make it a block

_SCHEMAS: dict[tuple[Any, ...], dict[str, Any]] = {}


class SchemaOnce(_Base):
    """Put before `Block` in a block's bases: its JSON schema is made once per arguments."""

    @classmethod
    def model_json_schema(
        cls,
        by_alias: bool | None = True,
        ref_template: str = "#/definitions/{model}",
        schema_generator: type[GenerateJsonSchema] = GenerateJsonSchema,
        mode: Literal["validation", "serialization"] = "validation",
        **more: Any,
    ) -> dict[str, Any]:
        """The class's JSON schema (a copy of the one made on the first call)."""
        by_alias = True if by_alias is None else by_alias  # Block's default
        key = (cls, by_alias, ref_template, schema_generator, mode, *sorted(more.items()))
        schema = _SCHEMAS.get(key)
        if schema is None:
            make = super().model_json_schema
            schema = make(by_alias, ref_template, schema_generator, mode, **more)
            _SCHEMAS[key] = schema
        return copy.deepcopy(schema)
