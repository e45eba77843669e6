"""Rules the whole package keeps: every docstring example runs, the core layers never
import Prefect (docs/architecture.md), and no test imports from a conftest."""

from __future__ import annotations

import ast
import doctest
import importlib
import importlib.util
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


def _imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """The package's modules `path` (module `name`) imports, anywhere in it but under
    `if TYPE_CHECKING:`; `from pkg import mod` counts as importing `pkg.mod`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".rstrip(".")
            submodules = {f"{base}.{alias.name}" for alias in node.names}
            found |= (submodules & known) or {base}
    return {module for module in found if module in known and module != name}


def import_circles() -> list[list[str]]:
    """Groups of the package's modules that import each other, directly or around a loop
    (strongly connected components of the import graph, Tarjan's algorithm)."""
    paths = {name: Path(importlib.util.find_spec(name).origin) for name in MODULES}  # type: ignore[arg-type, union-attr]
    graph = {name: _imported_modules(path, name, set(paths)) for name, path in paths.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return sorted(circles)


# None left; a circle that must stay for a while is named here, with why.
KNOWN_CIRCLES: set[str] = set()


def test_no_import_circles_inside_the_package() -> None:
    """Two modules that import each other (even inside a function) are one module in two
    files: neither can be read, tested or moved alone. A package's `__init__` that
    re-exports its modules is read as importing them, so those modules import their
    siblings directly, never through the package."""
    circles = {" <-> ".join(group) for group in import_circles()}
    assert circles - KNOWN_CIRCLES == set(), "break these import circles:\n" + "\n".join(
        sorted(circles - KNOWN_CIRCLES)
    )
    gone = KNOWN_CIRCLES - circles
    assert not gone, f"broken at last: remove {sorted(gone)} from KNOWN_CIRCLES"


def test_the_circle_finder_finds_a_circle_through_a_function_level_import(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.py").write_text("import pkg.b\n")
    (tmp_path / "b.py").write_text("def f():\n    from pkg import a\n")
    (tmp_path / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n"
    )
    known = {"pkg.a", "pkg.b", "pkg.c"}
    assert _imported_modules(tmp_path / "a.py", "pkg.a", known) == {"pkg.b"}
    assert _imported_modules(tmp_path / "b.py", "pkg.b", known) == {"pkg.a"}
    assert _imported_modules(tmp_path / "c.py", "pkg.c", known) == set()


# What makes a module-level name state that lives for the whole process.
CONTAINERS = {"set", "dict", "list", "OrderedDict", "defaultdict", "deque"}
ALWAYS_STATE = {
    "WeakSet",
    "WeakValueDictionary",
    "WeakKeyDictionary",
    "local",
    "ContextVar",
    "count",
}
MUTATORS = {
    "add", "append", "extend", "insert", "update", "setdefault", "pop", "popitem",
    "discard", "remove", "clear", "move_to_end", "appendleft",
}  # fmt: skip
CACHES = {"lru_cache", "cache"}
STATE_SECTION = "## State that lives for a whole process"


def _call_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Call):
        func = node.func
        return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return None


def _mutated(tree: ast.Module) -> set[str]:
    """The names `tree` changes in place: `name[k] = v`, `del name[k]`, `name.add(...)`."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Store | ast.Del)
            and isinstance(node.value, ast.Name)
        ):
            names.add(node.value.id)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in MUTATORS
            and isinstance(node.func.value, ast.Name)
        ):
            names.add(node.func.value.id)
    return names


def module_state(path: Path) -> set[str]:
    """The module-level names of `path` that hold mutable state: containers the module
    changes, thread-locals, weak collections, context variables, counters, and functions
    with a cache."""
    tree = ast.parse(path.read_text())
    mutated = _mutated(tree)
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            value, call = node.value, _call_name(node.value)
            container = isinstance(value, ast.Dict | ast.List | ast.Set) or call in CONTAINERS
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and (
                    call in ALWAYS_STATE or (container and target.id in mutated)
                ):
                    names.add(target.id)
        elif isinstance(node, ast.FunctionDef):
            decorators = {
                _call_name(d) or getattr(d, "attr", None) or getattr(d, "id", None)
                for d in node.decorator_list
            }
            if decorators & CACHES:
                names.add(node.name)
    return names


def test_every_piece_of_process_state_is_in_the_architecture_map() -> None:
    """Every module-level container the module changes, thread-local, weak collection,
    context variable, counter and cached function is named in docs/architecture.md's
    table of process state, with its bound. The simulator is a test server of its own."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    section = text[text.index(STATE_SECTION) :]
    section = section[: section.index("\n## ", len(STATE_SECTION))]
    missing = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "simulator" not in path.parts
        for name in sorted(module_state(path))
        if f"`{name}" not in section and f" {name}`" not in section
    ]
    assert missing == [], "add these to docs/architecture.md's process state:\n" + "\n".join(
        missing
    )
