"""The process the crash-and-resume tests kill: one `extract_records` run, as a user runs it.

    python resume_child_support.py CONFIG.json

CONFIG names the simulator (`base_url`, `api_key`), the files (`source`, `output`,
`quarantine`, `cache`) and `batch_size` / `concurrency`. The run's summary is printed as
one `SUMMARY {...}` line.

With `SOAK_KILL_BETWEEN_COMMITS=1` in the environment the process SIGKILLs itself right
after the journalled commit moved the output into place and before it moves the
quarantine: the tests' deterministic way to crash between the two moves. The hook lives
here, in the test's child, by wrapping the `os` module the sinks see; the product has none.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

MODEL = "gpt-4o-mini-2024-07-18"
PROMPT = "[record {ticket_id}]\nSubject: {subject}\n\n{body}"  # each request names its record
SCHEMA = "prefect_openai_chat.examples.tickets:SupportTicket"


class _KillAfterMovingOutput:
    """`os` as the sinks module sees it, except that moving `output` into place kills us."""

    def __init__(self, output: Path) -> None:
        self.output = output.absolute()

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def replace(self, src: Any, dst: Any) -> None:
        os.replace(src, dst)
        if Path(dst).absolute() == self.output:
            os.kill(os.getpid(), signal.SIGKILL)


def main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    from prefect_openai_chat import ChatModel, OpenAICredentials
    from prefect_openai_chat.flows import extract_records, sinks

    if os.environ.get("SOAK_KILL_BETWEEN_COMMITS") == "1":
        sinks.os = _KillAfterMovingOutput(Path(config["output"]))  # type: ignore[assignment]
    model = ChatModel(
        credentials=OpenAICredentials(base_url=config["base_url"], api_key=config["api_key"]),
        model=MODEL,
        read_timeout_s=5.0,
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
    )
    summary = extract_records(
        source=config["source"],
        schema=SCHEMA,
        chat_model=model,
        prompt=PROMPT,
        output=config["output"],
        quarantine=config["quarantine"],
        key_field="ticket_id",
        batch_size=config["batch_size"],
        concurrency=config["concurrency"],
        cache=config["cache"],
    )
    print("SUMMARY " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
