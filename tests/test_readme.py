"""The README stays true: its code compiles, its imports resolve, its commands exist."""

from __future__ import annotations

import ast
import importlib
import re
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python[^\n]*\n(.*?)```", README, re.S)
GUIDE = (ROOT / "deployments" / "README.md").read_text(encoding="utf-8")


def test_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_every_python_block_compiles_and_its_imports_resolve(index: int) -> None:
    tree = ast.parse(BLOCKS[index])
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"


def test_the_two_commands_are_the_ones_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = "python -m pip install -e '.[test]' && python -m pytest"
    assert test_command in README and test_command in ci
    assert "python -m pip install -e . && prefect-openai-chat demo" in README
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'prefect-openai-chat = "prefect_openai_chat.cli:main"' in pyproject


def test_the_automation_example_builds() -> None:
    block = next(b for b in BLOCKS if "Automation(" in b)
    code = block.replace("<your notification block id>", str(uuid.uuid4()))
    code = code.replace(").create()", ")")  # build it, do not send it anywhere
    namespace: dict[str, object] = {}
    exec(compile(code, "README automation example", "exec"), namespace)


def test_every_doc_page_the_readme_links_exists() -> None:
    for link in re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)", README):
        assert (ROOT / link).is_file(), link


@pytest.mark.parametrize("text", [README, GUIDE], ids=["README.md", "deployments/README.md"])
def test_both_readmes_say_to_start_a_server_and_set_the_api_url(text: str) -> None:
    text = " ".join(text.split())
    assert "prefect server start" in text
    assert "prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api" in text
    assert "PREFECT_API_URL must be set to start a Worker" in text


def test_the_deployment_guide_saves_the_blocks_as_the_readme_does() -> None:
    for text in (" ".join(README.split()), " ".join(GUIDE.split())):
        assert "prefect-openai-chat setup" in text
        assert "prefect block register -m prefect_openai_chat.blocks" in text
    assert "model='gpt-4o-mini'" not in GUIDE and 'model="gpt-4o-mini"' not in GUIDE
    assert "gpt-4o-mini-2024-07-18" in GUIDE


def test_serve_and_the_worker_deployment_have_distinct_names() -> None:
    assert "nightly-served" in README and "nightly-served" in GUIDE
    assert "python deployments/serve.py" in GUIDE


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_the_tour_s_block_saving_example_saves_models_whose_fallback_answers() -> None:
    """The tour's tuned model and its fallback, saved as the README says (against the
    simulator), load with the sections it names, and a call that falls back is answered."""
    import logging

    from prefect import flow

    from prefect_openai_chat import ChatModel, OpenAICredentials, chat_completion
    from prefect_openai_chat.blocks.assembly import RUNNERS
    from prefect_openai_chat.process import reset_process_state
    from prefect_openai_chat.simulator import Simulator

    snippet = next(block for block in BLOCKS if 'save("nightly-chat-model"' in block)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("prefect_openai_chat")
    with Simulator(profile="ideal", seed=23) as sim:
        OpenAICredentials(base_url=sim.base_url, api_key=sim.api_key).save(
            "openai-credentials", overwrite=True
        )
        logger.addHandler(handler)
        try:
            exec(compile(snippet, "README block-saving example", "exec"), {})
        finally:
            logger.removeHandler(handler)
        assert [r.getMessage() for r in records if "fallback" in r.getMessage()] == []
        model = ChatModel.load("nightly-chat-model")
        assert (model.timeouts.read_s, model.retries.max_attempts) == (60, 4)
        assert (model.circuit.failures, model.fallback_models) == (5, ["bigger-chat-model"])
        reset_process_state()
        guard = RUNNERS.build(model).protection.guard  # the primary's circuit, opened
        assert guard is not None
        for _ in range(model.circuit.failures):
            guard.record_failure(guard.before_call(), TimeoutError("down"))

        @flow
        def tour() -> tuple[str | None, str]:
            result = chat_completion("nightly-chat-model", [{"role": "user", "content": "Hi"}])
            return result.content, result.model

        try:
            content, answered_by = tour()
        finally:
            reset_process_state()
        assert content and answered_by.startswith("gpt-4o-2024-08-06")
