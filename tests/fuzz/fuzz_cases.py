"""Strategies of the end-to-end fuzz test: schemas, sources, scripted answers, sinks.

A `Case` is one run of `extract_records`: a pydantic schema built inside the strategy,
a source (a JSONL or CSV file with the quirks data engineers meet, or a list of items),
the exact answer the simulator gives for each record (by a marker in the record's text),
the output and quarantine formats, and what each record must become. What a record must
become is computed here from the schema and the answer alone, never by the plugin's code:
an answer that validates (`Schema.model_validate`) into a storable value (no integer
outside signed 64-bit, no NaN or infinity) is an output row equal to `model_dump(mode="json")`;
anything else is a quarantine row with a reason.

Used by `tests/fuzz/test_invariant_fuzz.py` and `benchmarks/bench_fuzz_invariant.py`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError, create_model, field_validator

from prefect_openai_chat.simulator.scripted import ScriptedAnswer

# CI-sized and derandomized, without shrinking: each example is two flow runs (seconds),
# shrinking one takes minutes, and a failure's message already shows its whole case.
# The suite's share is small (the named cases are the regressions that run every time);
# the long search is `benchmarks/bench_fuzz_invariant.py`.
# `HYPOTHESIS_PROFILE=fuzz-long` (or any "*-long") searches longer, at random, and shrinks.
settings.register_profile(
    "fuzz",
    derandomize=True,
    database=None,
    max_examples=8,
    deadline=None,  # a flow run takes seconds on a shared machine
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "fuzz-long",
    settings.get_profile("fuzz"),
    derandomize=False,
    max_examples=300,
    phases=list(Phase),
)
PROFILE = settings.get_profile(
    "fuzz-long" if os.environ.get("HYPOTHESIS_PROFILE", "").endswith("-long") else "fuzz"
)

INT64 = (-(2**63), 2**63 - 1)
EXCEPTIONS: dict[str, type[Exception]] = {
    "KeyError": KeyError,
    "TypeError": TypeError,
    "ZeroDivisionError": ZeroDivisionError,
    "ValueError": ValueError,
}
# Text that can read neither as a lazy placeholder ("...", "//", "# rest", "<rest of>",
# "[truncated]"), nor as a fence, nor as a record marker ("@@"); "v" first, so that no
# value is "etc" or "rest of" either. "Z" triggers the string validators. One text in
# ten ends in half an emoji (a lone surrogate: not storable, see `storable`).
_CHARS = st.characters(codec="utf-8", exclude_characters=".…/#<[`@\r", exclude_categories=["Cs"])
TEXT = st.builds(
    lambda head, s, tail: head + s + tail,
    st.sampled_from(["v", "v", "v", "vZ"]),
    st.text(_CHARS, max_size=10),
    st.sampled_from(["", "", "", "", "", "", "", "", "", "\ud83d"]),
)


# --- schemas ---------------------------------------------------------------------------------

SCALAR_KINDS = ("str", "int", "float", "bool", "opt_int", "opt_str", "lit_s", "lit_i", "union")
KINDS = (*SCALAR_KINDS, "list_int", "list_str", "nested", "opt_nested", "list_nested")
VALIDATED = ("str", "int", "float", "opt_int", "opt_str")  # kinds that may get a validator


@dataclass(frozen=True)
class FieldPlan:
    """One field: its kind, alias, default and validator."""

    name: str
    kind: str
    alias: str | None = None
    default: str = "required"  # required | value | factory | boom
    validator: str | None = None  # an exception name of EXCEPTIONS
    inner: SchemaPlan | None = None  # for nested kinds

    @property
    def key(self) -> str:
        """The key of the field in JSON answers (its alias, else its name)."""
        return self.alias or self.name


@dataclass(frozen=True)
class SchemaPlan:
    """A schema as data; `build()` makes the pydantic class."""

    name: str
    fields: tuple[FieldPlan, ...]

    def build(self) -> type[BaseModel]:
        """The pydantic model, made with `create_model`."""
        definitions: dict[str, Any] = {}
        validators: dict[str, Any] = {}
        for plan in self.fields:
            definitions[plan.name] = (_annotation(plan), _field_info(plan))
            if plan.validator is not None:
                validators[f"check_{plan.name}"] = field_validator(plan.name)(
                    _validator(EXCEPTIONS[plan.validator])
                )
        return create_model(self.name, __validators__=validators, **definitions)  # type: ignore[no-any-return, call-overload]

    def describe(self) -> str:
        """One line per field, for a falsifying example."""
        return "; ".join(
            f"{p.name}:{p.kind}"
            + (f" alias={p.alias!r}" if p.alias else "")
            + (f" default={p.default}" if p.default != "required" else "")
            + (f" validator raises {p.validator}" if p.validator else "")
            + (f" [{p.inner.describe()}]" if p.inner else "")
            for p in self.fields
        )


def _triggers(value: Any) -> bool:
    """Whether a validated value makes the field's validator raise."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int | float):
        return value < 0
    return isinstance(value, str) and "Z" in value


def _validator(exc: type[Exception]) -> Any:
    def check(cls: Any, value: Any) -> Any:
        if _triggers(value):
            if exc is ZeroDivisionError:
                return 1 / 0
            raise exc(f"the user's validator refuses {value!r}")
        return value

    return check


def _boom() -> Any:
    raise ZeroDivisionError("a default factory that raises")


def _annotation(plan: FieldPlan) -> Any:
    inner = plan.inner.build() if plan.inner is not None else None
    return {
        "str": str,
        "int": int,
        "float": float,
        "bool": bool,
        "opt_int": Optional[int],  # noqa: UP045 - the spelling users write is part of the test
        "opt_str": str | None,
        "lit_s": Literal["red", "green", "blue"],
        "lit_i": Literal[1, 2, 3],
        "union": Union[int, str],  # noqa: UP007
        "list_int": list[int],
        "list_str": list[str],
        "nested": inner,
        "opt_nested": Optional[inner],  # noqa: UP045
        "list_nested": list[inner],  # type: ignore[valid-type]
    }[plan.kind]


_DEFAULTS: dict[str, Any] = {
    "str": "vdefault",
    "int": 7,
    "float": 1.5,
    "bool": False,
    "lit_s": "red",
    "lit_i": 2,
    "union": 0,
}


def _field_info(plan: FieldPlan) -> Any:
    extra: dict[str, Any] = {"alias": plan.alias} if plan.alias else {}
    optional = plan.kind.startswith("opt_")
    if plan.default == "required":
        return Field(**extra)
    if plan.default == "boom":
        return Field(default_factory=_boom, **extra)
    if optional:
        return Field(default=None, **extra)
    if plan.kind == "nested":
        return Field(**extra)  # required: an inner model has required fields of its own
    if plan.kind.startswith("list_"):
        return Field(default_factory=list, **extra)
    value = _DEFAULTS[plan.kind]
    if plan.default == "factory":
        return Field(default_factory=lambda: value, **extra)
    return Field(default=value, **extra)


_NAMES = st.sampled_from(["name", "amount", "count", "ratio", "flag", "tags", "item", "kind"])
_ALIASES = st.sampled_from(["Full Name", "e-mail", "x.y", "Ünïcode field", "2nd", "class", "id"])


@st.composite
def field_plans(draw: st.DrawFn, index: int, kinds: tuple[str, ...], depth: int) -> FieldPlan:
    """One field of a schema; nested kinds only at depth 0."""
    kind = draw(st.sampled_from(kinds if depth == 0 else SCALAR_KINDS))
    name = f"{draw(_NAMES)}_{index}"
    alias = draw(st.none() | _ALIASES.map(lambda a: f"{a} {index}"))
    default = draw(st.sampled_from(["required"] * 4 + ["value"] * 2 + ["factory"] * 2 + ["boom"]))
    validator = None
    if kind in VALIDATED and draw(st.integers(0, 2)) == 0:
        validator = draw(st.sampled_from(sorted(EXCEPTIONS)))
    inner = None
    if kind in ("nested", "opt_nested", "list_nested"):
        inner = draw(schema_plans(depth=1, name=f"Inner{index}"))
    return FieldPlan(name, kind, alias, default, validator, inner)


@st.composite
def schema_plans(draw: st.DrawFn, depth: int = 0, name: str = "Fuzzed") -> SchemaPlan:
    """A schema of one to four fields (one to two when nested)."""
    count = draw(st.integers(1, 4 if depth == 0 else 2))
    return SchemaPlan(name, tuple(draw(field_plans(i, KINDS, depth)) for i in range(count)))


# --- answers ---------------------------------------------------------------------------------

_EXTREME_INTS = st.sampled_from([INT64[1], INT64[0], 0, -1, 1])
_EXTREME_FLOATS = st.sampled_from([1e308, -1e308, 5e-324, -0.0, 0.1, -2.5])
_INTS = st.integers(-1000, 1000) | _EXTREME_INTS
_FLOATS = st.floats(allow_nan=False, allow_infinity=False) | _EXTREME_FLOATS
_UNSTORABLE_INTS = st.sampled_from([2**63, -(2**63) - 1, 10**25, 2**64 + 5])
_UNSTORABLE_FLOATS = st.sampled_from([math.nan, math.inf, -math.inf])


def value_of(plan: FieldPlan) -> st.SearchStrategy[Any]:
    """A JSON value the field's type accepts (its validator may still refuse it).

    Never null for a field whose default factory raises: the engine drops a null for a
    field with a non-null default, and whether a raising factory counts as one is not the
    invariant's business.
    """
    values = _values_of(plan)
    return values.filter(lambda v: v is not None) if plan.default == "boom" else values


def _values_of(plan: FieldPlan) -> st.SearchStrategy[Any]:
    kind = plan.kind
    if kind in ("nested", "opt_nested", "list_nested"):
        assert plan.inner is not None
        one = instance_of(plan.inner)
        if kind == "nested":
            return one
        return st.none() | one if kind == "opt_nested" else st.lists(one, max_size=2)
    return {
        "str": TEXT,
        "int": _INTS,
        "float": _FLOATS,
        "bool": st.booleans(),
        "opt_int": st.none() | _INTS,
        "opt_str": st.none() | TEXT,
        "lit_s": st.sampled_from(["red", "green", "blue"]),
        "lit_i": st.sampled_from([1, 2, 3]),
        "union": _INTS | TEXT,
        "list_int": st.lists(_INTS, max_size=3),
        "list_str": st.lists(TEXT, max_size=3),
    }[kind]


def instance_of(schema: SchemaPlan) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object with a value for every field (by alias)."""
    return st.fixed_dictionaries({p.key: value_of(p) for p in schema.fields})


_WRONG: dict[str, Any] = {
    "str": 5,
    "int": "vabc",
    "float": "vabc",
    "bool": "maybe",
    "opt_int": 1.5,
    "opt_str": {"a": 1},
    "lit_s": "purple",
    "lit_i": 99,
    "union": [1],
    "list_int": 5,
    "list_str": "vx",
    "nested": "vx",
    "opt_nested": 3,
    "list_nested": {"a": 1},
}


def _unstorable(plan: FieldPlan, big_int: int, bad_float: float) -> Any:
    """A value of the field's type that no Parquet/SQLite column holds, else None."""
    if plan.kind in ("int", "opt_int", "union"):
        return big_int
    if plan.kind == "float":
        return bad_float
    if plan.kind == "list_int":
        return [1, big_int]
    return None


REFUSAL = "I'm sorry, but I can't help with that."
ANSWER_KINDS = (
    "valid", "valid", "valid", "wrong-type", "missing", "unstorable", "huge",
    "refusal", "prose", "fenced", "not-json", "array", "wrapped", "renamed",
)  # fmt: skip


@dataclass(frozen=True)
class AnswerPlan:
    """What the simulator answers for one record, and the JSON data in it (if any)."""

    kind: str
    content: str | None = None
    refusal: str | None = None

    def scripted(self) -> ScriptedAnswer:
        return ScriptedAnswer(content=self.content, refusal=self.refusal)


@st.composite
def answer_plans(draw: st.DrawFn, schema: SchemaPlan) -> AnswerPlan:
    """One answer: valid, invalid, unstorable, huge, a refusal, prose or fenced JSON."""
    kind = draw(st.sampled_from(ANSWER_KINDS))
    if kind == "refusal":
        return AnswerPlan(kind, refusal=REFUSAL)
    if kind == "not-json":
        return AnswerPlan(kind, content="I could not find anything to extract here")
    data = dict(draw(instance_of(schema)))
    plans = list(schema.fields)
    if kind == "array":
        return AnswerPlan(kind, content=json.dumps([data]))
    if kind == "wrapped":  # the value inside an object of its own
        return AnswerPlan(kind, content=json.dumps({"Wrapped": data}))
    if kind == "renamed":  # every key other than the schema's: nothing the model said fits
        return AnswerPlan(kind, content=json.dumps({f"x_{k}": v for k, v in data.items()}))
    if kind == "wrong-type":
        plan = draw(st.sampled_from(plans))
        data[plan.key] = _WRONG[plan.kind]
    elif kind == "missing":
        plan = draw(st.sampled_from(plans))
        data.pop(plan.key, None)
    elif kind == "unstorable":
        big, bad = draw(_UNSTORABLE_INTS), draw(_UNSTORABLE_FLOATS)
        for plan in draw(st.permutations(plans)):
            value = _unstorable(plan, big, bad)
            if value is not None:
                data[plan.key] = value
                break
    elif kind == "huge":
        size = draw(st.sampled_from([20_000, 70_000]))
        for plan in plans:
            if plan.kind in ("str", "opt_str", "union"):
                data[plan.key] = "v" + "huge text " * (size // 10)
                break
    text = json.dumps(data, ensure_ascii=draw(st.booleans()))  # NaN stays NaN, as models write
    if kind == "prose":
        text = f"Here is the extracted record:\n{text}\nLet me know if you need more"
    elif kind == "fenced":
        text = f"```json\n{text}\n```"
    return AnswerPlan(kind, content=text)


def answer_data(answer: AnswerPlan) -> tuple[bool, Any]:
    """(True, the JSON the answer holds) for the kinds that hold one; else (False, None)."""
    if answer.content is None or answer.kind in ("not-json",):
        return False, None
    text = answer.content
    if answer.kind == "prose":
        text = text.split("\n")[1]
    elif answer.kind == "fenced":
        text = text[len("```json\n") : -len("\n```")]
    return True, json.loads(text)


def expected_value(
    schema: type[BaseModel], answer: AnswerPlan
) -> tuple[dict[str, Any] | None, str]:
    """The output row an answer must give (`model_dump(mode="json")`), else None and why."""
    found, data = answer_data(answer)
    if not found:
        return None, f"{answer.kind} answer"
    try:
        model = schema.model_validate(data)
    except ValidationError:
        model = _unwrapped(schema, data)
        if model is None:
            return None, "does not validate"
    except Exception as exc:  # a user validator or default factory raising anything
        model = _unwrapped(schema, data)  # a validation problem like any other
        if model is None:
            return None, f"the schema raised {type(exc).__name__}"
    else:
        if _off_schema(schema, data):  # it validated on defaults alone
            model = _unwrapped(schema, data)
            if model is None:
                return None, "none of its keys is the schema's"
    if not storable(model.model_dump()):
        return (
            None,
            "validates, but holds an integer past int64, a non-finite float or a lone surrogate",
        )
    return model.model_dump(mode="json"), "valid"


def _off_schema(schema: type[BaseModel], data: Any) -> bool:
    """A non-empty object none of whose keys is a field's name or alias."""
    keys = {k for name, info in schema.model_fields.items() for k in (name, info.alias) if k}
    return isinstance(data, dict) and bool(data) and not keys & set(data)


def _unwrapped(schema: type[BaseModel], data: Any) -> BaseModel | None:
    """`{"Wrapper": {...valid...}}` validates once unwrapped (the engine's documented rule),
    unless the inner object's keys are none of the schema's either."""
    if isinstance(data, dict) and len(data) == 1:
        (inner,) = data.values()
        if isinstance(inner, dict) and not _off_schema(schema, inner):
            try:
                return schema.model_validate(inner)
            except Exception:
                return None
    return None


def storable(value: Any) -> bool:
    """No integer outside signed 64-bit, no NaN or infinity and no lone surrogate (half of
    a UTF-16 pair, which UTF-8 cannot encode) in a string or key anywhere in `value`."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return INT64[0] <= value <= INT64[1]
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(storable(k) and storable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(storable(v) for v in value)
    return True


# --- sources ---------------------------------------------------------------------------------

READABLE, UNREADABLE, EITHER = "readable", "unreadable", "either"
JSONL_QUIRKS = (
    "plain", "plain", "plain", "dup-keys", "deep", "very-deep", "surrogate", "big",
    "not-object", "malformed", "not-utf8", "cr-between-tokens", "cr-in-string",
)  # fmt: skip
CSV_QUIRKS = (
    "plain", "plain", "plain", "quoted-newline", "wrong-width", "stray-cr", "big",
    "not-utf8", "unterminated",
)  # fmt: skip
ITEM_QUIRKS = ("plain", "plain", "plain", "surrogate", "deep", "no-text", "not-dict", "big")
# How a quirk's record must end: readable ones by their answer, unreadable ones in the
# quarantine, and either way for the quirks whose fate the plugin may choose (quarantined
# with a reason, or read and extracted), as long as the record ends exactly once.
FATE = {
    "plain": READABLE,
    "dup-keys": EITHER,
    "deep": READABLE,
    "very-deep": EITHER,
    "surrogate": EITHER,
    "big": EITHER,
    "not-object": UNREADABLE,
    "malformed": UNREADABLE,
    "not-utf8": UNREADABLE,
    "cr-between-tokens": READABLE,
    "cr-in-string": UNREADABLE,
    "quoted-newline": READABLE,
    "wrong-width": UNREADABLE,
    "stray-cr": EITHER,
    "unterminated": EITHER,
    "no-text": UNREADABLE,  # no `text` field for the prompt: skipped, quarantined
    "not-dict": UNREADABLE,
}
BIG = 140 * 1024  # over the csv module's default field limit of 128 KiB


@dataclass
class RecordPlan:
    """One input record: its quirk, its marker, the answer, and (once laid out) its key."""

    number: int
    quirk: str
    words: str
    extra: Any
    answer: AnswerPlan
    key: str = ""  # the key the plugin reports (set by the layout)
    line: str = ""  # the line it starts on, in a file (set by the layout)

    @property
    def marker(self) -> str:
        return f"@@r{self.number}@@"

    @property
    def text(self) -> str:
        return f"{self.words} {self.marker} {self.words}"

    @property
    def fate(self) -> str:
        return FATE[self.quirk]


@dataclass
class Case:
    """One run: schema, source, answers, sinks; `layout()` writes the source."""

    schema_plan: SchemaPlan
    source_kind: str  # jsonl | csv | items
    records: list[RecordPlan]
    blank_lines: list[int]  # where blank lines go (before record i)
    bom: bool
    crlf: bool
    duplicate_header: bool
    output_suffix: str
    quarantine_suffix: str
    batch_size: int
    mode: str = "auto"  # how the plugin asks for JSON: auto, json_object or tools
    via: str = "online"  # or "batch": the Batch API night
    schema: type[BaseModel] = field(init=False)

    def __post_init__(self) -> None:
        self.schema = self.schema_plan.build()

    def describe(self) -> str:
        lines = [
            f"schema: {self.schema_plan.describe()}",
            f"source: {self.source_kind} bom={self.bom} crlf={self.crlf}"
            f" duplicate_header={self.duplicate_header} blanks={self.blank_lines}",
            f"sinks: output {self.output_suffix}, quarantine {self.quarantine_suffix};"
            f" batch_size {self.batch_size}; mode {self.mode}; via {self.via}",
        ]
        for r in self.records:
            content = r.answer.content or r.answer.refusal or ""
            shown = content if len(content) < 200 else content[:200] + f"... ({len(content)})"
            lines.append(
                f"  record {r.number} line {r.line or '?'} key {r.key or '?'}: {r.quirk} ({r.fate}),"
                f" answer {r.answer.kind}: {shown!r}"
            )
        return "\n".join(lines)


_WORDS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="@\r\n", exclude_categories=["Cs"]),
    max_size=8,
)
_EXTRAS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.none(),
)


@st.composite
def cases(draw: st.DrawFn, max_records: int = 5) -> Case:
    """A whole run: schema, source with its quirks, answers, sinks."""
    schema = draw(schema_plans())
    source_kind = draw(st.sampled_from(["jsonl", "jsonl", "csv", "items"]))
    quirks = {"jsonl": JSONL_QUIRKS, "csv": CSV_QUIRKS, "items": ITEM_QUIRKS}[source_kind]
    count = draw(st.integers(1, max_records))
    records = []
    for number in range(1, count + 1):
        quirk = draw(st.sampled_from(quirks))
        if quirk in ("big", "very-deep") and draw(st.integers(0, 3)) > 0:
            quirk = "plain"  # rarely: keeps examples fast
        records.append(
            RecordPlan(number, quirk, draw(_WORDS), draw(_EXTRAS), draw(answer_plans(schema)))
        )
    if source_kind == "items" and all(r.quirk in ("no-text", "not-dict") for r in records):
        records[0].quirk = "plain"  # a source no record of which fits the prompt is refused
    blanks = draw(st.lists(st.integers(0, count), max_size=2))
    suffixes = st.sampled_from(
        [".jsonl", ".jsonl", ".parquet", ".sqlite", ".ndjson", ".db", ".csv"]
    )
    return Case(
        schema_plan=schema,
        source_kind=source_kind,
        records=records,
        blank_lines=sorted(blanks),
        bom=draw(st.booleans()),
        crlf=draw(st.booleans()),
        duplicate_header=source_kind == "csv" and draw(st.integers(0, 7)) == 0,
        output_suffix=draw(suffixes),
        quarantine_suffix=draw(
            st.sampled_from([".jsonl", ".jsonl", ".jsonl", ".parquet", ".sqlite"])
        ),
        batch_size=draw(st.integers(1, 3)),
        mode=draw(st.sampled_from(["auto", "auto", "auto", "json_object", "tools"])),
    )


# --- named cases: one per quirk known to have broken the invariant ------------------------------

_ONE_STR = SchemaPlan("Named", (FieldPlan("name_0", "str"),))
_VALID = '{"name_0": "va"}'


def _one(kind: str, answer: str, quirk: str = "plain") -> tuple[str, str, str | None]:
    return quirk, kind, answer


# Half an emoji (a lone surrogate) in an answer: as the escape `\\ud83d` in its JSON text,
# as the character itself (the API's JSON carries it escaped), and in a wrong answer (its
# raw output goes to the quarantine).
_HALF_EMOJI = [
    _one("valid", _VALID),
    _one("valid", '{"name_0": "va \\ud83d"}'),
    _one("valid", '{"name_0": "va \ud83d"}'),
    _one("wrong-type", '{"name_0": 5, "note": "\udc00"}'),
]
_CONTROL = SchemaPlan(
    "Named",
    (
        FieldPlan("name_0", "str"),
        FieldPlan("n_1", "opt_int", default="value"),
        FieldPlan("tags_2", "list_nested", inner=SchemaPlan("Inner", (FieldPlan("x_0", "float"),))),
    ),
)
_CONTROL_VALID = '{"name_0": "va", "n_1": 9223372036854775807, "tags_2": [{"x_0": -0.0}]}'
NAMED: dict[str, tuple[SchemaPlan, str, list[tuple[str, str, str | None]], str, str]] = {
    # (schema, source kind, [(quirk, answer kind, answer content)], output, quarantine)
    "control-no-quirk-that-broke-it": (  # passes on the original code too: the checker's control
        _CONTROL,
        "jsonl",
        [
            _one("valid", _CONTROL_VALID),
            _one("prose", f"Here is the extracted record:\n{_CONTROL_VALID}\nLet me know"),
            _one("fenced", f"```json\n{_CONTROL_VALID}\n```"),
            _one("wrong-type", '{"name_0": 5, "tags_2": []}'),
            _one("missing", '{"tags_2": []}'),
            _one("not-json", "I could not find anything to extract here"),
            _one("refusal", None),
            _one("valid", _CONTROL_VALID, "malformed"),
            _one("valid", _CONTROL_VALID, "not-object"),
            _one("valid", _CONTROL_VALID, "not-utf8"),
            _one("valid", '{"name_0": "vb", "tags_2": []}', "cr-between-tokens"),
            _one("valid", '{"name_0": "vc", "tags_2": []}', "deep"),
        ],
        ".parquet",
        ".sqlite",
    ),
    "alias-columns-parquet": (
        SchemaPlan("Named", (FieldPlan("name_0", "str", alias="e-mail"),)),
        "jsonl",
        [_one("valid", '{"e-mail": "va"}')],
        ".parquet",
        ".jsonl",
    ),
    "alias-columns-sqlite": (
        SchemaPlan("Named", (FieldPlan("name_0", "int", alias="Full Name"),)),
        "jsonl",
        [_one("valid", '{"Full Name": 3}')],
        ".sqlite",
        ".jsonl",
    ),
    "nan-in-jsonl": (
        SchemaPlan("Named", (FieldPlan("name_0", "float"),)),
        "jsonl",
        [_one("unstorable", '{"name_0": NaN}'), _one("valid", '{"name_0": 1.5}')],
        ".jsonl",
        ".jsonl",
    ),
    "int-past-int64-parquet": (
        SchemaPlan("Named", (FieldPlan("name_0", "int"),)),
        "jsonl",
        [_one("unstorable", '{"name_0": 9223372036854775808}'), _one("valid", '{"name_0": 1}')],
        ".parquet",
        ".jsonl",
    ),
    "int-past-int64-nested-sqlite": (
        SchemaPlan("Named", (FieldPlan("name_0", "list_int"),)),
        "jsonl",
        [_one("unstorable", '{"name_0": [-9223372036854775809]}')],
        ".sqlite",
        ".jsonl",
    ),
    "validator-raises-keyerror": (
        SchemaPlan("Named", (FieldPlan("name_0", "int", validator="KeyError"),)),
        "jsonl",
        [_one("valid", '{"name_0": -1}'), _one("valid", '{"name_0": 2}')],
        ".jsonl",
        ".jsonl",
    ),
    "default-factory-raises": (
        SchemaPlan("Named", (FieldPlan("name_0", "str"), FieldPlan("n_1", "int", default="boom"))),
        "jsonl",
        [_one("valid", '{"name_0": "va", "n_1": 1}'), _one("missing", _VALID)],
        ".jsonl",
        ".jsonl",
    ),
    "csv-duplicate-header": (_ONE_STR, "csv", [_one("valid", _VALID)], ".jsonl", ".jsonl"),
    "csv-unterminated-quote": (
        _ONE_STR,
        "csv",
        [_one("valid", _VALID, "unterminated"), _one("valid", _VALID), _one("valid", _VALID)],
        ".jsonl",
        ".jsonl",
    ),
    "csv-big-field": (
        _ONE_STR,
        "csv",
        [_one("valid", _VALID), _one("valid", _VALID, "big")],
        ".jsonl",
        ".jsonl",
    ),
    "csv-stray-cr": (
        _ONE_STR,
        "csv",
        [_one("valid", _VALID), _one("valid", _VALID, "stray-cr")],
        ".jsonl",
        ".jsonl",
    ),
    "jsonl-very-deep": (
        _ONE_STR,
        "jsonl",
        [_one("valid", _VALID), _one("valid", _VALID, "very-deep")],
        ".jsonl",
        ".jsonl",
    ),
    "jsonl-lone-surrogate": (
        _ONE_STR,
        "jsonl",
        [_one("valid", _VALID), _one("valid", _VALID, "surrogate")],
        ".jsonl",
        ".jsonl",
    ),
    # A model's answer holding half an emoji (see `_HALF_EMOJI`), and in an extra key
    # (dropped: valid). Each output kind.
    **{
        f"answer-lone-surrogate-{output[1:]}": (
            _ONE_STR,
            "jsonl",
            [*_HALF_EMOJI, _one("valid", '{"name_0": "vb", "\ud800 key": 1}')],
            output,
            quarantine,
        )
        for output, quarantine in (
            (".jsonl", ".jsonl"),
            (".db", ".sqlite"),
            (".parquet", ".jsonl"),
            (".sqlite", ".parquet"),
        )
    },
    "csv-output-cr-empty-and-long": (  # a lone CR split the row in two; "" reads as null
        SchemaPlan("Named", (FieldPlan("name_0", "str"), FieldPlan("note_1", "opt_str"))),
        "jsonl",
        [
            _one("valid", '{"name_0": "va\\rvb", "note_1": "vc\\r"}'),
            _one("valid", '{"name_0": "va", "note_1": ""}'),
            _one("valid", '{"name_0": "", "note_1": null}'),
            _one("valid", '{"name_0": "va \\ud83d", "note_1": null}'),
            _one("valid", json.dumps({"name_0": "v" + "z" * 140_000, "note_1": "v\x00"})),
        ],
        ".csv",
        ".jsonl",
    ),
    "items-the-field-only-on-an-unreadable-record": (  # refused the night as a bad template
        _ONE_STR,
        "items",
        [_one("valid", _VALID, "surrogate"), _one("valid", _VALID, "no-text")],
        ".jsonl",
        ".jsonl",
    ),
    "csv-open-quote-closed-by-a-later-line": (  # the lines after it fall into other items
        _ONE_STR,
        "csv",
        [
            _one("valid", _VALID, "unterminated"),
            _one("not-json", "I could not find anything to extract", "quoted-newline"),
        ],
        ".jsonl",
        ".jsonl",
    ),
    "answers-off-schema-all-defaults": (  # these validated into defaults, marked valid
        SchemaPlan(
            "Named",
            (
                FieldPlan("name_0", "opt_str", default="value"),
                FieldPlan("n_1", "int", default="value"),
            ),
        ),
        "jsonl",
        [
            _one("wrapped", '{"Wrapped": {"name_0": "va", "n_1": 3}}'),
            _one("renamed", '{"x_name_0": "va", "x_n_1": 3}'),
            _one("wrapped", '{"Wrapped": {"x_name_0": "va"}}'),
            _one("valid", "{}"),
            _one("valid", '{"name_0": "vb", "note": "extra"}'),
        ],
        ".sqlite",
        ".jsonl",
    ),
    "wrapped-answer-default-factory-raises": (  # the wrapper raised: unwrapped all the same
        SchemaPlan("Named", (FieldPlan("name_0", "bool", default="boom"),)),
        "jsonl",
        [_one("wrapped", '{"Wrapped": {"name_0": false}}')],
        ".jsonl",
        ".jsonl",
    ),
    "answer-lone-surrogate-batch-api": (  # the same answers through the Batch API
        _ONE_STR,
        "jsonl",
        _HALF_EMOJI,
        ".parquet",
        ".jsonl",
    ),
    "items-lone-surrogate": (
        _ONE_STR,
        "items",
        [_one("valid", _VALID), _one("valid", _VALID, "surrogate")],
        ".jsonl",
        ".jsonl",
    ),
}


def named_case(name: str) -> Case:
    """The named case: a small source that once broke the invariant in one way."""
    schema, kind, rows, output, quarantine = NAMED[name]
    # no words: the quoted newline's line is a lone `"`, which closes the open quote
    words = "" if name == "csv-open-quote-closed-by-a-later-line" else "w"
    records = [
        RecordPlan(
            number,
            quirk,
            words,
            5,
            AnswerPlan(answer, content=content, refusal=None if content else REFUSAL),
        )
        for number, (quirk, answer, content) in enumerate(rows, start=1)
    ]
    duplicate = name == "csv-duplicate-header"
    control = name.startswith("control")  # blank lines, a BOM and CRLF too
    blanks = [0, 3, len(records)] if control else []
    via = "batch" if name.endswith("-batch-api") else "online"
    return Case(
        schema, kind, records, blanks, control, control, duplicate, output, quarantine, 2, via=via
    )
