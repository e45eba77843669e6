"""A user of `extract_records` never sees pydantic's warning about the `schema` parameter,
and the plugin no longer silences it for the whole process at import."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import warnings
    from prefect_openai_chat.flows.extract_records import extract_records

    named = extract_records.with_options(name="nightly")
    named.validate_parameters(
        {"source": [], "chat_model": "m", "output": "o.jsonl", "quarantine": "q.jsonl",
         "spec": {"schema": "prefect_openai_chat.examples.tickets:SupportTicket",
                  "prompt": "{body}"}}
    )
    left = [f for f in warnings.filters if "schema" in str(getattr(f[1], "pattern", f[1]))]
    print("filters left:", len(left))
    """
)


def test_no_schema_warning_and_no_process_wide_filter() -> None:
    done = subprocess.run(
        [sys.executable, "-W", "always::UserWarning", "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "shadows an attribute" not in done.stderr, done.stderr
    assert "filters left: 0" in done.stdout
