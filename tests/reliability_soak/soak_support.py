"""Helpers of the reliability soak tests: sample records, the soak benchmark's checks."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MODEL = "gpt-4o-mini-2024-07-18"


def load_script(path: Path, name: str) -> ModuleType:
    """A script of the repository (not part of the package) as a module."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def soak_bench() -> ModuleType:
    """`benchmarks/bench_chaos_soak.py`: the soak and its checks, shared with the benchmark."""
    return load_script(ROOT / "benchmarks" / "bench_chaos_soak.py", "_bench_chaos_soak")


def tickets(count: int, seed: int) -> list[dict[str, Any]]:
    """`count` distinct sample tickets (`scripts/make_sample_data.py`)."""
    generator = load_script(ROOT / "scripts" / "make_sample_data.py", "_make_sample_data")
    records: list[dict[str, Any]] = generator.generate(count=count, seed=seed)
    return records
