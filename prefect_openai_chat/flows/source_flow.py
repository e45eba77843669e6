"""A Prefect flow whose `source` parameter may be any iterable, a generator included.

Example:
    >>> from prefect_openai_chat.flows.source_flow import materialise_source
    >>> def night(source, output): ...
    >>> materialise_source(night, ((r for r in [{"id": 1}]), "out.jsonl"), {})
    (([{'id': 1}], 'out.jsonl'), {})
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from prefect import Flow

from prefect_openai_chat.extraction.storable import INT64_MAX, INT64_MIN, int_text
from prefect_openai_chat.flows.frames import frame_kind, frame_records
from prefect_openai_chat.flows.sources import set_aside
from prefect_openai_chat.storage import masked_options

P = ParamSpec("P")
R = TypeVar("R")


def materialise_source(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call's arguments with an iterable `source` (a generator too) or a data frame
    (`frames.frame_records`: pandas, polars, pyarrow) turned into a list of records, its
    dicts that are not JSON data set aside (`set_aside`)."""
    try:
        bound = inspect.signature(fn).bind_partial(*args, **kwargs)
    except TypeError:
        return args, kwargs  # Prefect reports the bad call in its own words
    value = bound.arguments.get("source")
    if frame_kind(value) is not None:  # a DataFrame or an Arrow table: its rows
        bound.arguments["source"] = set_aside(list(frame_records(value)))
    elif isinstance(value, Iterable) and not isinstance(value, str | bytes | Path | Mapping):
        bound.arguments["source"] = set_aside(value if isinstance(value, list) else list(value))
    return bound.args, bound.kwargs


class SourceFlow(Flow[P, R]):
    """A Prefect flow whose `source` parameter may be any iterable, a generator included.

    Prefect serialises a flow's parameters for its API before the flow body runs, which
    would use up a generator: the body would see no record and report success, and
    would fail on a data frame. This flow makes a list of records of such a source
    first, and sets aside the items Prefect's parameter handling would fail the run on
    (see `set_aside`).
    """

    if not TYPE_CHECKING:  # type checkers keep `Flow.__call__`'s precise overloads

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            with _schema_parameter_allowed():
                super().__init__(*args, **kwargs)

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            args, kwargs = materialise_source(self.fn, args, kwargs)
            return super().__call__(*args, **kwargs)

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """As `Flow.validate_parameters`, without pydantic's warning about `schema`."""
        with _schema_parameter_allowed():
            return super().validate_parameters(parameters)

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """As `Flow.serialize_parameters` (what the run's page shows), with the credentials
        of the run's `storage_options` masked (`storage.masked_options`) and integers
        beyond 64 bits shown as their digits (`api_safe`); the flow gets them unchanged."""
        serialized = api_safe(super().serialize_parameters(parameters))
        given = parameters.get("run")  # `RunOptions`, or its fields as a deployment saved them
        options = (
            given.get("storage_options")
            if isinstance(given, dict)
            else getattr(given, "storage_options", None)
        )
        if options is not None and isinstance(serialized.get("run"), dict):
            serialized["run"] = {**serialized["run"], "storage_options": masked_options(options)}
        return serialized

    def with_options(self, **options: Any) -> SourceFlow[P, R]:
        """As `Flow.with_options`, keeping the generator-safe call."""
        with _schema_parameter_allowed():
            copy = super().with_options(**options)
        copy.__class__ = type(self)
        return copy  # type: ignore[return-value]


def api_safe(serialized: dict[str, Any]) -> dict[str, Any]:
    """`serialized` with every integer beyond 64 bits as a string of its digits (`int_text`),
    changed in place: it is the copy `Flow.serialize_parameters` made. A loop, not recursion:
    a record nested a thousand deep is as safe as a flat one.

    The Prefect API stores such a parameter, but Prefect 3.9.0 and earlier then fail every
    listing of flow runs that includes the run (`orjson`: "Integer exceeds 64-bit
    range"), the UI's runs page too: one record of a source list holding a 20-digit
    number would break it for everyone.

    Example:
        >>> api_safe({"source": [{"id": 2**70, "n": 3, "ok": True}]})
        {'source': [{'id': '1180591620717411303424', 'n': 3, 'ok': True}]}
    """
    stack: list[dict[Any, Any] | list[Any]] = [serialized]
    while stack:
        container = stack.pop()
        entries = container.items() if isinstance(container, dict) else enumerate(container)
        for place, item in entries:
            if isinstance(item, dict | list):
                stack.append(item)
            elif type(item) is int and not INT64_MIN <= item <= INT64_MAX:  # bool is not
                container[place] = int_text(item)  # a value replaced: the size stays
    return serialized


@contextlib.contextmanager
def _schema_parameter_allowed() -> Iterator[None]:
    """Prefect validates a flow's parameters through a pydantic model it builds when the
    flow is made and at each call; a parameter called `schema`, as users expect, makes
    pydantic warn that it shadows an attribute of `BaseModel`. That is harmless here."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message='Field name "schema" in ".*" shadows', category=UserWarning
        )
        yield


def source_flow(**options: Any) -> Callable[[Callable[P, R]], SourceFlow[P, R]]:
    """Like `@flow(**options)`, for a flow with a `source` parameter (see `SourceFlow`)."""

    def wrap(fn: Callable[P, R]) -> SourceFlow[P, R]:
        return SourceFlow(fn=fn, **options)

    return wrap
