"""Re-ask only for what was wrong: the invalid fields, against a schema of just those fields.

When an answer fails validation field by field (a bad enum value, a wrong type, a missing
field), the fields that validated are kept and the model is asked again for the others
alone: `plan_partial` says which, `subset_model` is a pydantic model of just those fields
(names, aliases, types, constraints and descriptions as in the schema, nested models
included), and `merge_answer` puts the new values into the kept ones, for the whole
schema to validate again. It is not used (a whole re-ask is) when an error is not about
one field: the schema's `model_validator` rules, its own code raising, a value at the
root, or an unknown field of a model that allows none.

Example:
    >>> from typing import Literal
    >>> from pydantic import BaseModel, ValidationError
    >>> class Row(BaseModel):
    ...     name: str
    ...     status: Literal["open", "closed"]
    >>> data = {"name": "Ada", "status": "pending"}
    >>> try:
    ...     Row.model_validate(data)
    ... except ValidationError as exc:
    ...     ask = plan_partial(Row, data, exc)
    >>> ask.keys, ask.kept, ask.wrong, list(ask.schema.model_fields)
    (('status',), {'name': 'Ada'}, {'status': 'pending'}, ['status'])
    >>> Row.model_validate(merge_answer(ask, {"status": "open"}))
    Row(name='Ada', status='open')
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError, create_model

from prefect_openai_chat.extraction.parsing import wrapped_object

# Errors of one field that a re-ask of that field can fix; anything else at a field's
# path (a custom error type) is one too, as long as its path starts at a field.
_WHOLE_OBJECT_TYPES = frozenset({"schema_code_failed", "model_type", "model_attributes_type"})


@dataclass(frozen=True)
class PartialAsk:
    """What a partial re-ask asks for, and what it keeps.

    Attributes:
        schema: A pydantic model of just the fields asked for again.
        keys: Their JSON keys (aliases where the schema has them), in the schema's order.
        kept: The answer's fields that validated, as JSON data (unknown keys dropped).
        wrong: The invalid values the answer gave for them (missing fields absent).
    """

    schema: type[BaseModel]
    keys: tuple[str, ...]
    kept: dict[str, Any]
    wrong: dict[str, Any]


def plan_partial(
    schema: type[BaseModel], data: Any, error: ValidationError | None
) -> PartialAsk | None:
    """The partial re-ask for `data`'s `error`, or None when only a whole re-ask fits.

    The fields the answer left out are asked for too, optional ones included: strict
    structured outputs ask for every field, so a left-out one was not said, and would
    otherwise take its default unasked.

    `error` None: `data` validated, or was cut short; only the fields it lacks are asked.
    None when `data` is not an object, when an error has no field path (the schema's
    `model_validator` rules and its own code raising), or when an error is about a key
    the schema does not have (`extra="forbid"`).
    """
    if not isinstance(data, dict):
        return None
    names = _json_keys(schema)
    bad: set[str] = set()
    for err in error.errors(include_url=False) if error is not None else ():
        loc = err.get("loc") or ()
        if not loc or err.get("type") in _WHOLE_OBJECT_TYPES:
            return None
        head = loc[0]
        if not isinstance(head, str) or head not in names:
            return None
        bad.add(names[head])
    bad.update(name for key, name in _field_keys(schema) if key not in data and name not in data)
    if not bad:
        return None
    keys = tuple(key for key, name in _field_keys(schema) if name in bad)
    allow_extra = schema.model_config.get("extra") == "allow"
    kept = {
        k: v
        for k, v in data.items()
        if (k in names and names[k] not in bad) or (k not in names and allow_extra)
    }
    wrong = {k: data[k] for k in keys if k in data}
    return PartialAsk(subset_model(schema, keys), keys, kept, wrong)


def partial_answer(ask: PartialAsk, answer: Any) -> Any:
    """The answer to a partial re-ask, unwrapped when one key that is not a field wraps it
    (`{"RowFields": {...}}`)."""
    inner = wrapped_object(answer)
    if inner is not None and not set(answer) & set(ask.keys):
        return inner
    return answer


def merge_answer(ask: PartialAsk, answer: Any) -> Any:
    """The kept fields with the answer's values for the fields asked for.

    An answer wrapped in one key that is not a field (`{"RowFields": {...}}`) is
    unwrapped; keys that were not asked for are ignored (the kept values stand). An
    answer that is not an object is returned as it is, for validation to say so.
    """
    answer = partial_answer(ask, answer)
    if not isinstance(answer, dict):
        return answer
    merged = dict(ask.kept)
    for key in ask.keys:
        if key in answer:
            merged[key] = answer[key]
    return merged


@functools.lru_cache(maxsize=256)  # bounded: keys and values hold schema classes
def subset_model(schema: type[BaseModel], keys: tuple[str, ...]) -> type[BaseModel]:
    """A pydantic model of the fields of `schema` whose JSON keys are `keys`.

    Each field keeps its annotation, alias, constraints, default and description, so the
    JSON schema the API sees for it is the one the whole schema has for that field
    (nested models come along in `$defs`). Validators are not copied: the answer is
    validated as part of the whole schema, validators and all.

    Example:
        >>> from pydantic import BaseModel, Field
        >>> class Row(BaseModel):
        ...     name: str
        ...     total: float = Field(alias="Total", ge=0)
        >>> sub = subset_model(Row, ("Total",))
        >>> sub.__name__, sub.model_json_schema()["properties"]["Total"]["minimum"]
        ('RowFields', 0)
    """
    wanted = set(keys)
    definitions: dict[str, Any] = {}
    for key, name in _field_keys(schema):
        if key in wanted:
            info = copy.copy(schema.model_fields[name])
            definitions[name] = (info.annotation, info)
    made: type[BaseModel] = create_model(
        f"{schema.__name__}Fields",
        __doc__=f"The corrected fields of {schema.__name__}, and no others.",
        __config__={"populate_by_name": True},
        **definitions,
    )
    return made


@functools.lru_cache(maxsize=256)
def _field_keys(schema: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    """`(JSON key, field name)` of every field, in the schema's order."""
    return tuple((info.alias or name, name) for name, info in schema.model_fields.items())


@functools.lru_cache(maxsize=256)
def _keys_to_names(schema: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    pairs = dict(_field_keys(schema))
    for _, name in _field_keys(schema):
        pairs.setdefault(name, name)  # a field given by its name (populate_by_name)
    return tuple(pairs.items())


def _json_keys(schema: type[BaseModel]) -> dict[str, str]:
    """JSON key (alias, or name) -> field name."""
    return dict(_keys_to_names(schema))
