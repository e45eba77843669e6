"""Rules the whole package keeps: every docstring example runs, the core layers never
import Prefect (docs/architecture.md), and no test imports from a conftest."""

from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import prefect_openai_chat

PACKAGE = Path(prefect_openai_chat.__file__).parent
CORE_LAYERS = ("resilience", "tokens", "extraction", "chat", "storage")
MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="prefect_openai_chat.")
    if not info.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    failed, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert failed == 0, f"{failed} docstring example(s) of {name} failed (run it with -s)"


@pytest.mark.parametrize("layer", CORE_LAYERS)
def test_core_layers_never_import_prefect(layer: str) -> None:
    offenders = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{path.relative_to(PACKAGE)}:{node.lineno} imports {n}"
                for n in names
                if n == "prefect" or n.startswith("prefect.")
            ]
    assert offenders == [], "the core layers stay free of Prefect:\n" + "\n".join(offenders)


def test_no_test_module_imports_from_a_conftest() -> None:
    """`from conftest import X` names whichever folder's conftest was imported first when
    folders run together; shared test code lives in a `*_support.py` module."""
    tests = Path(__file__).parent
    offenders = [
        f"{path.relative_to(tests)}:{node.lineno}"
        for path in sorted(tests.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if (isinstance(node, ast.ImportFrom) and node.module == "conftest")
        or (isinstance(node, ast.Import) and any(a.name == "conftest" for a in node.names))
    ]
    assert offenders == [], "import shared test code from a *_support.py module:\n" + "\n".join(
        offenders
    )


def test_no_two_test_modules_share_a_name() -> None:
    """Test folders are not packages: pytest puts each on `sys.path`, so two support modules
    of one name (`proxy_support.py` in two folders) make one folder import the other's."""
    tests = Path(__file__).parent
    seen: dict[str, list[str]] = {}
    for path in sorted(tests.rglob("*.py")):
        if path.name not in ("conftest.py", "__init__.py"):
            seen.setdefault(path.name, []).append(str(path.relative_to(tests)))
    shared = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert shared == {}, f"rename one of each: {shared}"


def test_every_error_class_and_result_model_is_exported_at_the_top_level() -> None:
    from prefect_openai_chat import errors, results

    public = [
        name
        for module in (errors, results)
        for name, value in vars(module).items()
        if isinstance(value, type)
        and value.__module__ == module.__name__
        and not name.startswith("_")
    ]
    missing = [name for name in public if name not in prefect_openai_chat.__all__]
    assert missing == [], f"export these from prefect_openai_chat: {missing}"
    assert all(getattr(prefect_openai_chat, name) is not None for name in public)
