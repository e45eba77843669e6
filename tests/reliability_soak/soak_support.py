"""Helpers of the reliability soak tests: sample records, and the benchmarks they share.

The soak and the crash-and-resume scenarios live in `benchmarks/bench_chaos_soak.py` and
`benchmarks/bench_crash_resume.py` (one implementation: the benchmarks run them at full
size, these tests on a few hundred records).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def benchmark(name: str) -> ModuleType:
    """`benchmarks/<name>.py` as a module (the benchmarks folder is not a package)."""
    folder = str(ROOT / "benchmarks")
    if folder not in sys.path:
        sys.path.append(folder)
    return importlib.import_module(name)


def tickets(count: int, seed: int) -> list[dict[str, Any]]:
    """`count` distinct sample tickets (`scripts/make_sample_data.py`, as the benchmarks use)."""
    records: list[dict[str, Any]] = benchmark("_common").tickets(count, seed=seed)
    return records
