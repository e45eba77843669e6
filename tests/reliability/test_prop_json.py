"""Properties of JSON extraction and local repair (`extraction/parsing.py`, and the
extraction loop around it): any text gives a typed `ParseOutcome` (never an exception),
valid JSON comes back unchanged however it is cut or wrapped, and deep or huge documents
end within a time bound."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prop_support import DOCUMENTS, OBJECTS, PROSE, within
from pydantic import BaseModel

from prefect_openai_chat.extraction import placeholders
from prefect_openai_chat.extraction.engine import run_extraction
from prefect_openai_chat.extraction.parsing import (
    MAX_REPAIR_CHARS,
    ParseKind,
    ParseOutcome,
    parse_output,
    parse_result,
)
from prefect_openai_chat.results import ChatResult, Outcome, ToolCall, Usage

KINDS = set(get_args(ParseKind))
JSONISH = st.text(alphabet='{}[]",:\\ \n\tab01.-etruflsn`/#<>…', max_size=200)
BOUND_S = 20.0  # wall clock for one multi-megabyte answer, on a loaded 2-core machine


def check(outcome: ParseOutcome) -> ParseOutcome:
    """The invariants of every outcome."""
    assert isinstance(outcome, ParseOutcome)
    assert outcome.kind in KINDS
    if outcome.kind == "json":
        assert isinstance(outcome.data, dict | list)
        assert outcome.reason is None
    else:
        assert outcome.reason, outcome
    return outcome


def unlazy(doc: Any) -> bool:
    """No string in `doc` reads as a placeholder (those answers are "lazy", by design)."""
    text = json.dumps(doc, ensure_ascii=False)
    return not placeholders.placeholder_values(doc) and not placeholders.markers_in(text)


@given(st.text(max_size=300) | JSONISH)
def test_any_text_gives_a_typed_outcome(text: str) -> None:
    check(parse_output(text))


@given(DOCUMENTS, st.sampled_from([None, 2]))
def test_valid_json_is_returned_unchanged(doc: Any, indent: int | None) -> None:
    outcome = check(parse_output(json.dumps(doc, indent=indent, ensure_ascii=False)))
    if unlazy(doc):
        assert outcome.kind == "json" and outcome.data == doc and outcome.fixes == ()


@settings(max_examples=30)
@given(DOCUMENTS)
def test_a_document_cut_anywhere_gives_a_typed_outcome(doc: Any) -> None:
    text = json.dumps(doc, ensure_ascii=False)
    for end in range(len(text) + 1):
        check(parse_output(text[:end]))
    if unlazy(doc):
        assert parse_output(text).data == doc


@given(OBJECTS, PROSE, PROSE)
def test_json_in_prose_is_found(doc: dict[str, Any], before: str, after: str) -> None:
    outcome = check(parse_output(f"{before}{json.dumps(doc)}{after}"))
    if unlazy(doc):
        assert outcome.kind == "json" and outcome.data == doc


@given(OBJECTS, PROSE, PROSE, st.sampled_from(["json", "JSON", "", "python"]), st.booleans())
def test_json_in_a_code_fence_is_found(
    doc: dict[str, Any], before: str, after: str, lang: str, closed: bool
) -> None:
    fence = f"```{lang}\n{json.dumps(doc, indent=2)}\n" + ("```" if closed else "")
    outcome = check(parse_output(f"{before}\n{fence}\n{after}"))
    if unlazy(doc):
        assert outcome.kind == "json" and outcome.data == doc
        assert "fences" in outcome.fixes


@given(
    st.one_of(st.none(), st.text(max_size=100) | JSONISH),
    st.lists(st.tuples(st.text(max_size=5), JSONISH), max_size=2),
    st.none() | st.text(max_size=20),
)
def test_any_chat_result_parses_to_a_typed_outcome(
    content: str | None, calls: list[tuple[str, str]], refusal: str | None
) -> None:
    tools = [ToolCall(id=f"call_{i}", name=name, arguments=a) for i, (name, a) in enumerate(calls)]
    check(parse_result(ChatResult(content=content, tool_calls=tools, refusal=refusal)))


class Loose(BaseModel):
    """A json_object schema that takes any value."""

    name: str | None = None
    payload: Any = None


def extract_from(answer: str) -> Any:
    """`run_extraction` where every attempt answers `answer`."""

    async def call(messages: list[dict[str, Any]], params: dict[str, Any]) -> ChatResult:
        return ChatResult(content=answer, finish_reason="stop", usage=Usage(prompt_tokens=1))

    return asyncio.run(
        run_extraction(call, Loose, "Ada", model="gpt-4o-mini", mode="json_object", max_reprompts=1)
    )


@given(st.text(max_size=200) | JSONISH | DOCUMENTS.map(json.dumps))
def test_any_answer_ends_the_extraction_with_an_outcome(answer: str) -> None:
    result = extract_from(answer)
    assert result.outcome in get_args(Outcome)
    assert result.ok == (result.outcome == "ok") and result.calls in (1, 2)


def _rows(n: int) -> dict[str, Any]:
    return {"rows": [{"id": i, "text": f"row {i} " + "lorem ipsum " * 8} for i in range(n)]}


ROWS = 24_000
HUGE = json.dumps(_rows(ROWS))  # about 3.2 MB
DEEP_ARRAY = "[" * 10_000 + "]" * 10_000
DEEP_OBJECT = '{"a":' * 10_000 + "1" + "}" * 10_000
ADVERSARIAL = {
    "deep array": (DEEP_ARRAY, "no_json"),
    "deep object": (DEEP_OBJECT, "no_json"),
    "deep unclosed": ("[" * 10_000, "no_json"),
    "deep in prose": (f"Here you go: {DEEP_OBJECT} Hope it helps.", "no_json"),
    "deep in a fence": (f"```json\n{DEEP_ARRAY}\n```", "no_json"),
    "100k open braces": ("{" * 100_000, "no_json"),
    "huge valid": (HUGE, "json"),
    "huge valid in prose": (f"Sure! {HUGE} Anything else?", "json"),
    "huge with a trailing comma": (HUGE[:-2] + ",]}", "no_json"),
    "huge cut": (HUGE[: len(HUGE) // 2], "no_json"),
    "huge garbage with brackets": ("x [ y " * 500_000, "no_json"),
    "huge near-miss placeholders": ('{"a": "' + "... more " * 330_000, "no_json"),
    "huge near-miss comments": ("{" + "// x " * 600_000, "no_json"),
    "huge quotes and backslashes": ('{"' + '\\"' * 1_000_000, "no_json"),
    "huge backticks": ("`" * 1_500_000, "no_json"),
    # a value of nothing but line ends or blanks (a model's runaway): once cubic, see below
    "huge run of line ends in a value": ('{"a": "' + "\\n" * 1_000_000 + '"}', "json"),
    "huge run of blanks in a value": ('{"a": "(' + " " * 2_000_000 + '"}', "json"),
    "huge run of line ends after an ellipsis": (
        '{"a": "... ' + "\\n" * 1_000_000 + 'rest"}',
        "json",
    ),
    "largest repaired garbage": ("{" + "a" * (MAX_REPAIR_CHARS - 2) + "}", None),
    "largest repaired list": ('{"a": [' + "1," * (MAX_REPAIR_CHARS // 2 - 8) + "]", "json"),
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_deep_and_huge_answers_end_quickly_with_a_typed_outcome(name: str) -> None:
    text, kind = ADVERSARIAL[name]
    outcome, seconds = within(BOUND_S, parse_output, text)
    check(outcome)
    assert kind is None or outcome.kind == kind, (outcome.kind, outcome.reason)
    if name == "huge valid":
        assert outcome.data == _rows(ROWS)
    print(f"{name}: {len(text) / 1e6:.2f} MB -> {outcome.kind} in {seconds:.2f} s")


@pytest.mark.parametrize("name", ["deep object", "huge valid", "huge cut"])
def test_deep_and_huge_answers_end_the_extraction_with_an_outcome(name: str) -> None:
    answer = ADVERSARIAL[name][0]
    if name == "huge valid":  # under the schema's own key: `{"rows": ...}` is none of its keys
        answer = f'{{"name": "Ada", "payload": {answer}}}'
    result, _ = within(BOUND_S, extract_from, answer)
    assert result.outcome in get_args(Outcome)
    assert result.outcome == ("ok" if name == "huge valid" else "invalid"), result.reason
    if name == "huge valid":
        assert result.value == Loose(name="Ada", payload=_rows(ROWS))


# Pieces of every placeholder pattern, so that strings near and on the patterns are common.
PLACEHOLDER_BITS = st.sampled_from(
    ["//", "/*", "#", "...", "…", "[", "]", ",", ":", "<", ">", "(", ")", "rest", "remaining",
     "of", "omitted", "more", "truncated", "etc", "here", "above", "same as above", " ",
     "\n", '"', "a", "x1"]
)  # fmt: skip
PLACEHOLDER_TEXT = st.lists(PLACEHOLDER_BITS, max_size=12).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.lists(PLACEHOLDER_TEXT, max_size=6))
def test_one_search_over_the_strings_finds_what_a_search_of_each_finds(
    strings: list[str],
) -> None:
    """`placeholder_values` rules out most answers with one search of their joined strings: it
    must name exactly the strings that a check of each string on its own names."""
    data = {f"k{i}": text for i, text in enumerate(strings)}
    each = [
        text[:60]
        for text in reversed(strings)  # the walk takes a dict's values last first
        if text and (placeholders.is_placeholder(text) or placeholders.markers_in(text))
    ]
    assert placeholders.placeholder_values(data) == each


# The whole-value placeholder pattern before `is_placeholder`: right, but its `^\s*`,
# `\(?\s*(?:...)?\s*` and `\s*$` made a value of 2,000 line ends take 15 s (4,000: 98 s).
CUBIC_PLACEHOLDER = re.compile(
    r"^\s*(?:\.\.\.|…|etc\.?|and so on|\[\s*truncated\s*\]"
    r"|<[^>]{0,80}\b(?:rest|remaining)\b[^>]{0,80}>"
    r"|\(?\s*(?:\.\.\.|…)?\s*(?:rest|remaining) (?:of|omitted)\b.*)\s*$",
    re.IGNORECASE,
)


@settings(max_examples=600, deadline=None)
@given(PLACEHOLDER_TEXT)
def test_placeholder_values_are_the_ones_the_cubic_pattern_named(text: str) -> None:
    """The same strings are placeholders as before; only the time changed."""
    assert placeholders.is_placeholder(text) == bool(CUBIC_PLACEHOLDER.match(text))


# The ellipsis head of `_NEAR` before: `\s*\(?\s*` scanned a run of white space after "..."
# again for each split of it (5,000 line ends: 0.8 s, quadratic).
QUADRATIC_ELLIPSIS_HEAD = re.compile(
    r"(?:\.\.\.|…)\s*\(?\s*(?:rest|remaining|more|etc)\b", re.IGNORECASE
)


@settings(max_examples=600, deadline=None)
@given(PLACEHOLDER_TEXT)
def test_the_ellipsis_head_finds_what_the_quadratic_one_found(text: str) -> None:
    def spans(pattern: re.Pattern[str]) -> list[tuple[int, int]]:
        return [m.span() for m in pattern.finditer(text)]

    assert spans(placeholders._NEAR[1].head) == spans(QUADRATIC_ELLIPSIS_HEAD)
