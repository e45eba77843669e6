"""The batches of one run, on disk before any wait: a restarted run resumes, never pays twice.

A run is named by what it extracts (the model, the endpoint and every record's cache
key); its ledger is a small JSON file holding, per round, each submitted batch's
`custom_id`s, input file and batch id. It is written (atomically) when the run starts
(with a fresh attempt id that its batches carry in their metadata) and right after each
batch is created, before it is waited for; it is removed when the run has ended every
record, so a later run of the same inputs starts afresh.

Example:
    >>> import tempfile
    >>> ledger = BatchLedger.open(tempfile.mkdtemp(), run_key("gpt-4o-mini", "http://x", ["a"]))
    >>> ledger.add(0, ["a"], "file-1", "batch_1")
    >>> BatchLedger.open(ledger.path.parent, ledger.key).batches(0)[0]["batch_id"]
    'batch_1'
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def run_key(model: str, base_url: str, custom_ids: Iterable[str]) -> str:
    """The name of a run: its model, endpoint and the sorted set of its records' keys."""
    digest = hashlib.sha256(f"{model}\n{base_url}\n".encode())
    for custom_id in sorted(set(custom_ids)):
        digest.update(custom_id.encode() + b"\n")
    return digest.hexdigest()[:32]


class BatchLedger:
    """The batches a run has created, by round."""

    def __init__(self, path: Path, key: str, data: dict[str, Any]) -> None:
        self.path, self.key, self.data = path, key, data

    @classmethod
    def open(cls, folder: str | Path, key: str) -> BatchLedger:
        """The ledger of run `key` in `folder` (empty when the run is new)."""
        path = Path(folder) / f"batch-run-{key}.json"
        if path.exists():
            return cls(path, key, json.loads(path.read_text(encoding="utf-8")))
        ledger = cls(path, key, {"run": key, "attempt": uuid.uuid4().hex, "rounds": {}})
        ledger._save()  # on disk before any batch is created, with the name batches carry
        return ledger

    @property
    def run_name(self) -> str:
        """What this run's batches carry in their metadata: the run and this attempt at it.

        A restarted run reads the same ledger, so it finds batches by this name; a later run
        of the same inputs (after this one finished) has a new one, so it never picks up
        this run's batches.
        """
        return f"{self.key}-{self.data.get('attempt', '')}"

    def batches(self, round_number: int) -> list[dict[str, Any]]:
        """The batches created in `round_number`, in order."""
        found: list[dict[str, Any]] = self.data["rounds"].get(str(round_number), [])
        return found

    def add(self, round_number: int, custom_ids: list[str], file_id: str, batch_id: str) -> None:
        """Record a created batch, on disk before returning."""
        entry = {"custom_ids": custom_ids, "input_file_id": file_id, "batch_id": batch_id}
        self.data["rounds"].setdefault(str(round_number), []).append(entry)
        self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.data), encoding="utf-8")
        os.replace(temporary, self.path)

    def remove(self) -> None:
        """Forget the run: every record has ended."""
        self.path.unlink(missing_ok=True)
