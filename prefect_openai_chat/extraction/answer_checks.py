"""Whether a parsed answer's value can be taken: it validates, it is what the schema asked
for, and every output can hold it. The extraction loop (`engine`) re-asks otherwise.

- `validated`: the value, or the validation error; a wrapper (`{"Person": {...}}`)
  around a valid value is unwrapped.
- `off_schema`: an answer none of whose keys is the schema's is a problem, not a value of
  defaults.
- `dump_storable`: the value as JSON data, or the problem keeping it out of the output
  (`extraction.storable`, or the schema's serializer raising).

Example:
    >>> from pydantic import BaseModel
    >>> class Contact(BaseModel):
    ...     name: str | None = None
    >>> validated(Contact, {"Contact": {"name": "Bob"}})
    (Contact(name='Bob'), True)
    >>> print(off_schema(Contact, {"full_name": "Bob"}).problem)
    none of the answer's keys ('full_name') is a field of the schema; answer with the keys 'name'
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from prefect_openai_chat.extraction.parsing import validate, wrapped_object
from prefect_openai_chat.extraction.reprompt import Problem, format_path
from prefect_openai_chat.extraction.schema import answer_keys
from prefect_openai_chat.extraction.storable import first_unstorable

M = TypeVar("M", bound=BaseModel)


def validated(schema: type[M], data: Any) -> tuple[M, bool] | ValidationError:
    """`(value, unwrapped)` when `data` validates (maybe once unwrapped), else the error.

    `{"Person": {...}}` or `{"properties": {...}}` around a valid value is unwrapped, also
    when the wrapper itself validates (a schema whose fields all have defaults takes any
    object, so the wrapper would give a value of defaults only: a silent wrong value).
    """
    outer: tuple[M, bool] | ValidationError
    try:
        outer = validate(schema, data), False
    except ValidationError as exc:
        outer = exc
    inner = wrapped_object(data)
    if (
        inner is not None
        and (isinstance(outer, ValidationError) or _unknown_keys(schema, data))
        and not _unknown_keys(schema, inner)
    ):
        try:
            return validate(schema, inner), True
        except ValidationError:
            pass
    return outer


def off_schema(schema: type[BaseModel], data: Any) -> Problem | None:
    """The problem of an answer none of whose keys is the schema's, else None.

    Such an answer validates only when every field has a default, and then holds
    nothing the model said (`{"full_name": "Bob"}` for a schema of `name`): re-asked,
    never stored as valid. Unknown keys beside known ones are left alone.
    """
    unknown = _unknown_keys(schema, data)
    if not unknown:
        return None
    keys = ", ".join(repr(k) for k in unknown[:10])
    fields = ", ".join(repr(k) for k in answer_keys(schema)[:30])
    return Problem(
        format_path(()),
        f"none of the answer's keys ({keys}) is a field of the schema; answer with the"
        f" keys {fields}",
    )


def _unknown_keys(schema: type[BaseModel], data: Any) -> list[str]:
    """The keys of `data` when it is an object none of whose keys the schema knows (and
    the schema keeps no unknown keys, and its keys can be told); else []."""
    if not isinstance(data, dict) or not data or schema.model_config.get("extra") == "allow":
        return []
    known = answer_keys(schema)
    if not known or any(key in known for key in data):
        return []
    return [str(key) for key in data]


def dump_storable(value: BaseModel) -> Any:
    """`value` as JSON data when every output can hold it, else the `Problem` keeping it out.

    An integer beyond 64 bits, a NaN / Infinity or a lone surrogate is a validation
    problem like a schema rule, and re-asked: it is nearly always the model's slip (a
    count of 10**20, NaN for "unknown"), which it corrects when told what is wrong; the
    re-asks are bounded by `max_reprompts`, after which the record is quarantined as
    `invalid` (final, so a re-run does not pay for it again). Never stored as valid: no
    output format could hold it the same way. The schema's own serializers raising
    count the same way.
    """
    try:
        data = value.model_dump(mode="json")
    except Exception as exc:  # the schema's own code (a serializer)
        return Problem(
            format_path(()),
            f"the schema's serializer raised {type(exc).__name__}: {str(exc)[:300]}",
        )
    found = first_unstorable(data)
    if found is None:
        return data
    path, problem = found
    return Problem(path or format_path(()), problem)
