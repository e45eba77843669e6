"""The exactly-once invariant, fuzzed end to end for longer than CI does.

Runs the strategies of `tests/fuzz/` (schemas, quirky JSONL/CSV/iterable sources, the
simulator's scripted answers, output and quarantine formats) through the real
`extract_records` flow against the simulator, twice per example on one ledger, and
checks each example with `tests/fuzz/fuzz_check.py::check_case`: every input line ends
exactly once, output rows equal the validated answers, the run completes, a re-run pays
nothing for finished records. Unlike the test, a failure does not stop the search and is
not shrunk: every failing example is counted, and the distinct failures are printed with
the first example that showed each.

Printed: examples run, failures found, distinct failures (each with an example), the mean
time of a passing example, seconds.
Exits 1 when any example failed.

Run: python benchmarks/bench_fuzz_invariant.py [--examples 200] [--records 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def signature(exc: BaseException) -> str:
    """What kind of failure: the first line of its message, numbers and values left out."""
    text = str(exc).split("\n--- the case ---")[0]
    line = next((part for part in text.split("\n") if part.strip()), type(exc).__name__)
    line = re.sub(r"\{.*\}|\[.*\]|'[^']*'|\"[^\"]*\"", "…", line)
    return re.sub(r"\d+", "#", line)[:160]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="examples (default 200)")
    parser.add_argument("--records", type=int, default=5, help="most records per source")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
    from fuzz_cases import Case, cases
    from fuzz_check import check_case
    from hypothesis import HealthCheck, Phase, given, seed, settings
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_LOCAL_STORAGE_PATH,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    from prefect_openai_chat.simulator import Simulator

    logging.getLogger("prefect").setLevel(logging.CRITICAL)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
    failures: dict[str, list[tuple[BaseException, str]]] = {}
    runs = 0
    passed: list[float] = []  # seconds of each passing example (two flow runs)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=180):
        updates: dict[Any, Any] = {
            PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
            PREFECT_LOCAL_STORAGE_PATH: Path(tmp) / "results",
        }
        with temporary_settings(updates=updates), Simulator(profile="ideal", seed=21) as sim:

            @seed(args.seed)
            @settings(
                max_examples=args.examples,
                database=None,
                deadline=None,
                phases=[Phase.generate],  # every failure counted, none shrunk
                suppress_health_check=list(HealthCheck),
            )
            @given(case=cases(max_records=args.records))
            def one(case: Case) -> None:
                nonlocal runs
                runs += 1
                with tempfile.TemporaryDirectory(dir=tmp) as folder:
                    begun = time.perf_counter()
                    try:
                        check_case(case, sim, Path(folder))
                    except Exception as exc:
                        failures.setdefault(signature(exc), []).append((exc, case.describe()))
                    else:
                        passed.append(time.perf_counter() - begun)
                print(f"\r{runs} examples, {sum(map(len, failures.values()))} failed", end="")

            one()
    seconds = time.perf_counter() - started
    found = sum(len(v) for v in failures.values())
    print(f"\nexamples run: {runs}")
    print(f"failures found: {found} ({len(failures)} distinct)")
    for number, (sig, seen) in enumerate(sorted(failures.items(), key=lambda kv: -len(kv[1])), 1):
        exc = seen[0][0]
        print(f"\n[{number}] x{len(seen)}: {sig}\n{str(exc)[:1500]}")
    if passed:
        print(f"\npassing examples: {len(passed)}, {sum(passed) / len(passed):.2f} s each")
    print(f"seconds: {seconds:.1f}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
