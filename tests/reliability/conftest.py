"""Hypothesis profiles of the reliability suite.

`reliability` (the default) is deterministic (`derandomize=True`, no example database)
and small enough for CI: the whole folder runs in well under 40 s. Set
`HYPOTHESIS_PROFILE=reliability-long` for a longer, randomized search.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

settings.register_profile(
    "reliability",
    derandomize=True,
    database=None,
    max_examples=40,
    deadline=timedelta(seconds=5),  # generous: the machine is shared; hangs have own bounds
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "reliability-long",
    parent=settings.get_profile("reliability"),
    derandomize=False,
    max_examples=2_000,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reliability"))
