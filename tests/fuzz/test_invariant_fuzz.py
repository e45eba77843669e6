"""The promise, fuzzed end to end: every input line ends exactly once, with the right value.

Hypothesis generates schemas (aliases, Optional, Union, nested models, lists, Literal,
extreme numbers, validators and default factories that raise), sources (JSONL, CSV and
lists of items with blank lines, a BOM, CRLF, stray `\\r`, unterminated quotes, duplicated
keys, fields over 128 KiB, deep nesting, lone surrogates, bytes that are not UTF-8, lines
that are not objects), the simulator's exact answer for each record (valid, invalid,
unstorable, huge, refusals, prose, fenced JSON) and the sinks; the real `extract_records`
flow runs against the simulator over HTTP, twice on one ledger. `fuzz_check.check_case`
asserts the invariant (see its docstring). The profile is `fuzz_cases.PROFILE`
(derandomized, CI-sized); `HYPOTHESIS_PROFILE=fuzz-long` searches longer.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from fuzz_cases import NAMED, PROFILE, Case, cases, named_case
from fuzz_check import check_case
from hypothesis import given, settings

from prefect_openai_chat.simulator import Simulator

pytestmark = pytest.mark.filterwarnings('ignore:Field name "schema"')


@pytest.mark.slow  # ~10 s: started early, not last
@settings(PROFILE)
@given(case=cases())
def test_every_record_ends_exactly_once_with_its_answer(sim: Simulator, case: Case) -> None:
    with tempfile.TemporaryDirectory() as folder:
        check_case(case, sim, Path(folder))


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_quirk_keeps_the_invariant(sim: Simulator, name: str, tmp_path: Path) -> None:
    """One small case per quirk that broke the invariant, so each is checked on every run."""
    check_case(named_case(name), sim, tmp_path)
