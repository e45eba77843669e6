"""Everything a run leaves behind, as text, for the secret-leak scan.

`Catch` records every log line of every logger at DEBUG; `api_texts` reads back
what the Prefect API stored about the runs (flow and task runs with their
parameters, states and cache keys, logs, artifacts, events); `file_texts` reads
every file under a folder (results, outputs, quarantines, SQLite caches) as text.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx


class Catch(logging.Handler):
    """Every record of every logger, formatted with its traceback, at DEBUG."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record) + " " + repr(record.args))
        except Exception as exc:  # a record that cannot be formatted is reported, not lost
            self.lines.append(f"unformattable record {record.name}: {exc!r} {record.msg!r}")


def every_logger() -> Iterator[logging.Logger]:
    """The root logger and every logger that exists now."""
    yield logging.getLogger()
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            yield logger


def exception_text(error: BaseException) -> str:
    """All an exception says: traceback, message, repr, body, notes, cause chain."""
    parts = ["".join(traceback.format_exception(error))]
    seen: BaseException | None = error
    while seen is not None:
        parts += [str(seen), repr(seen), repr(seen.args), repr(getattr(seen, "__notes__", []))]
        parts += [repr(getattr(seen, "body", None)), repr(getattr(seen, "message", None))]
        response = getattr(seen, "response", None)
        if response is not None:
            parts.append(response.text)
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def file_texts(folder: Path) -> dict[str, str]:
    """Every file under `folder`, decoded leniently (binary files too: SQLite, Parquet)."""
    return {
        str(path): path.read_bytes().decode("latin-1")
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def api_texts() -> dict[str, str]:
    """What the current Prefect API holds: runs, states, logs, artifacts, events."""
    from prefect import get_client

    texts: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        for run in _all(client.read_flow_runs):
            texts[f"flow run {run.id}"] = run.model_dump_json()
            for state in client.read_flow_run_states(run.id):
                texts[f"flow run state {state.id}"] = state.model_dump_json()
        for task_run in _all(client.read_task_runs):
            texts[f"task run {task_run.id}"] = task_run.model_dump_json()
        texts["logs"] = "\n".join(log.model_dump_json() for log in _all(client.read_logs))
        texts["artifacts"] = "\n".join(a.model_dump_json() for a in client.read_artifacts())
        texts["variables"] = "\n".join(v.model_dump_json() for v in client.read_variables())
        texts["block documents"] = "\n".join(
            b.model_dump_json() for b in client.read_block_documents(include_secrets=False)
        )
        page = client.request("POST", "/events/filter", json={"limit": 50}).json()
        events = page["events"]
        while page.get("next_page") and len(events) < 5000:
            page = httpx.get(page["next_page"]).json()
            events += page["events"]
        texts["events"] = json.dumps(events)
    return texts


def _all(read: Callable[..., list[Any]]) -> Iterator[Any]:
    """Every item of a paged Prefect read (the API answers at most 200 at a time)."""
    offset = 0
    while page := read(limit=200, offset=offset):
        yield from page
        offset += len(page)


def found_in(texts: dict[str, str], needles: list[str]) -> list[str]:
    """Where any needle occurs, with a little context around it."""
    hits = []
    for where, text in texts.items():
        for needle in needles:
            at = text.find(needle)
            if at >= 0:
                hits.append(f"{where}: ...{text[max(0, at - 120) : at + 40]!r}...")
    return hits


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)
