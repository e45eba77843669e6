"""Every Python block of README.md, docs/ and deployments/ runs as written.

The blocks are found and run with `pytest-examples`: each one is written to a file and
run as a `__main__` module, as `python snippet.py` would, inside the `user_machine`
fixture (tests/docs/conftest.py). A block's fence can say how it is tested:

- ```` ```python test="skip" reason="..." ````: not run; the reason is reported.
- ```` ```python test="continue" ````: runs after the blocks above it on the same page,
  with their names defined (a page that builds one example over several blocks).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from pytest_examples import CodeExample, EvalExample, find_examples

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = list(find_examples(ROOT / "README.md", ROOT / "docs", ROOT / "deployments"))
MODES = {"run", "skip", "continue"}


def example_id(example: CodeExample) -> str:
    return f"{example.path.relative_to(ROOT)}:{example.start_line}"


def mode_of(example: CodeExample) -> str:
    mode = example.prefix_settings().get("test", "run")
    assert mode in MODES, (
        f"{example_id(example)}: unknown test={mode!r}, use one of {sorted(MODES)}"
    )
    return mode


def skip_reason(example: CodeExample) -> str:
    """The reason a skipped block gives; a skip without one is an error."""
    reason = example.prefix_settings().get("reason")
    assert reason, f'{example_id(example)}: test="skip" needs reason="..." in the fence'
    return reason


def blocks_before(example: CodeExample) -> list[CodeExample]:
    """The blocks of the same page above `example`, back to the first that is not a continuation."""
    page = [e for e in EXAMPLES if e.path == example.path and e.start_line < example.start_line]
    chain: list[CodeExample] = []
    for previous in reversed(page):
        chain.insert(0, previous)
        if mode_of(previous) != "continue":
            break
    return chain


def run_block(
    eval_example: EvalExample, example: CodeExample, namespace: dict[str, Any]
) -> dict[str, Any]:
    """Run one block; a failure names the page and line, and the error.

    pytest-examples rewrites a failing block's traceback to point into the Markdown file;
    on Python 3.11 pytest cannot render that traceback (INTERNALERROR), so it is turned
    into a plain failure here.
    """
    try:
        return eval_example.run(example, module_globals=namespace)
    except Exception as exc:
        lines = [
            tb.tb_lineno for tb in _walk(exc.__traceback__)
            if tb.tb_frame.f_code.co_filename == str(example.path)
        ]  # fmt: skip
        where = f"{example.path.relative_to(ROOT)}:{lines[-1] if lines else example.start_line}"
        message = (
            f"the block at {example_id(example)} failed at {where}: {type(exc).__name__}: {exc}"
        )
        raise AssertionError(message) from None


def _walk(tb: TracebackType | None) -> list[TracebackType]:
    out = []
    while tb is not None:
        out.append(tb)
        tb = tb.tb_next
    return out


def test_the_docs_have_python_blocks() -> None:
    pages = {e.path.relative_to(ROOT).as_posix() for e in EXAMPLES}
    assert {"README.md", "docs/simulator.md", "docs/migrating.md"} <= pages
    assert len(EXAMPLES) >= 30


@pytest.mark.parametrize("example", EXAMPLES, ids=example_id)
def test_block_runs_as_written(
    example: CodeExample, eval_example: EvalExample, request: pytest.FixtureRequest
) -> None:
    mode = mode_of(example)
    if mode == "skip":
        pytest.skip(f"{example_id(example)}: {skip_reason(example)}")
    request.getfixturevalue("user_machine")  # the machine the docs assume (tests/docs/conftest.py)
    namespace: dict[str, Any] = {}
    if mode == "continue":
        chain = blocks_before(example)
        assert chain, f'{example_id(example)}: test="continue" on the first block of the page'
        for previous in chain:
            namespace = run_block(eval_example, previous, namespace)
    run_block(eval_example, example, namespace)


def test_a_broken_block_fails_with_its_page_and_line(eval_example: EvalExample) -> None:
    broken = CodeExample.create(
        "x = 1\nprint(undefined_name)\n", path=ROOT / "README.md", start_line=40
    )
    with pytest.raises(AssertionError) as failure:
        run_block(eval_example, broken, {})
    assert str(failure.value) == (
        "the block at README.md:40 failed at README.md:42:"
        " NameError: name 'undefined_name' is not defined"
    )


def test_a_skip_needs_a_reason_and_a_mode_must_be_known() -> None:
    block = CodeExample.create("pass\n", path=ROOT / "README.md", prefix='python test="skip"')
    assert mode_of(block) == "skip"
    with pytest.raises(AssertionError, match=r'needs reason="\.\.\."'):
        skip_reason(block)
    with pytest.raises(AssertionError, match="unknown"):
        mode_of(CodeExample.create("pass\n", path=ROOT / "README.md", prefix='python test="nope"'))
