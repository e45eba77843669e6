"""Every regular expression of the package ends in linear time on runs of one character.

A model in a runaway writes long runs (line ends, blanks, digits, dots); a pattern that
backtracks over such a run is slow with its square or its cube, and it runs on the
night's event loop, where every other record waits for it. Three did: the whole-value
placeholder (2,000 line ends: 15 s), the ellipsis head of `_NEAR` and the reset duration.
This times each pattern defined at a module's top level (and `_NEAR`'s), as the package
uses it, on runs of 5,000, so a new one that backtracks fails here, not at 3 am. The
simulator's patterns are left out: they read the prompts of tests and demos, not a
night's answers (and `_AMOUNT`, `_EMAIL` there are quadratic on a long run of digits or
letters: a slow simulator, not a stalled night).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import time
import warnings
from collections.abc import Iterator

import pytest

import prefect_openai_chat

RUN = 5_000
BOUND_S = 0.1  # a linear pattern takes about 1 ms on these; the three above took 0.8-15 s
CHARACTERS = [" ", "\n", "\t", "(", ".", "a", '"', "\\", "/", "[", "{", "<", ",", "-", "0",
              "…", "*", "#", "`", "' "]  # fmt: skip
HEADS = ["", "(", "... ", "rest ", "x"]
# Patterns the package only ever matches from a string's start (`match`, `fullmatch`):
# timed that way, as a search from every position is not how they run.
ANCHORED = {
    "prefect_openai_chat.extraction.placeholders._PLACEHOLDER",  # `is_placeholder`: fullmatch
    "prefect_openai_chat.examples.tickets._ORDER_LOOSE",  # `_clean_order_id`: fullmatch
}


def patterns() -> Iterator[tuple[str, re.Pattern[str]]]:
    for info in pkgutil.walk_packages(prefect_openai_chat.__path__, "prefect_openai_chat."):
        if info.name.endswith("__main__") or ".simulator" in info.name:
            continue
        with warnings.catch_warnings():  # the old module names warn that they moved
            warnings.simplefilter("ignore", DeprecationWarning)
            module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            many = isinstance(value, list | tuple)
            for i, item in enumerate(value if many else [value]):
                where = f"{info.name}.{name}" + (f"[{i}]" if many else "")
                if isinstance(item, re.Pattern) and isinstance(item.pattern, str):
                    yield where, item
                head = getattr(item, "head", None)
                if isinstance(head, re.Pattern):  # `placeholders._Near`
                    yield f"{where}.head", head
                    yield f"{where}.words", item.words


PATTERNS = dict(patterns())


def test_the_package_s_patterns_are_found() -> None:
    assert len(PATTERNS) >= 25 and set(PATTERNS) >= ANCHORED


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_a_pattern_ends_in_linear_time_on_runs(name: str) -> None:
    pattern = PATTERNS[name]
    run = pattern.match if name in ANCHORED else pattern.search
    slowest = 0.0, ""
    for char in CHARACTERS:
        for head in HEADS:
            text = head + char * RUN + "!"
            seconds = min(_timed(run, text) for _ in range(2))
            slowest = max(slowest, (seconds, f"{head!r} + {char!r} * {RUN}"))
    assert slowest[0] < BOUND_S, f"{name} took {slowest[0]:.2f} s on {slowest[1]}"


def _timed(run: object, text: str) -> float:
    started = time.perf_counter()
    run(text)  # type: ignore[operator]
    return time.perf_counter() - started
