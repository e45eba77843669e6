"""Fault-injection tests: real Redis, a real Prefect server, real HTTP to the simulator.

They reuse the helpers of the flow, resilience and deployment tests, whose folders
are put on `sys.path` here so that this folder also runs on its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
for folder in ("flows", "resilience", "deploy"):
    if str(TESTS / folder) not in sys.path:
        sys.path.append(str(TESTS / folder))
