"""The batches of one run, saved before any wait: a restarted run resumes, never pays twice.

A run is named by what it extracts (the model, the endpoint and every record's cache
key); its state is a small JSON document holding, per round, each submitted batch's
range of `custom_id`s (the first and last, sorted, and how many: a batch holds a run of
the round's queued records in custom-id order), input file and batch id: its size grows
with the batches, never with the records. It is saved when the run starts (with a fresh
attempt id that its batches carry in their metadata) and right after each batch is
created, before it is waited for; it is removed when the run has ended every record, so
a later run of the same inputs starts afresh.

Where it is saved: in the record ledger (`Ledger.save_batch_run`: a `batch_runs` table
of the SQLite file, or a table beside the PostgreSQL one), so a run resumed on another
host finds its batches; without a record ledger (`cache=False`), in a file of a
`batch-runs` folder on this host, as before. A run started before the upgrade left its
file in that folder: the first open in a ledger moves it there and removes the file.

Example:
    >>> import tempfile
    >>> ledger = BatchLedger.open(tempfile.mkdtemp(), run_key("gpt-4o-mini", "http://x", ["a"]))
    >>> ledger.add(0, ("a", "a", 1), "file-1", "batch_1")
    >>> BatchLedger.open(ledger.store.folder, ledger.key).batches(0)[0]["batch_id"]
    'batch_1'
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any, Protocol

from prefect_openai_chat.extraction.ledger.base import Ledger


def run_key(model: str, base_url: str, custom_ids: Iterable[str]) -> str:
    """The name of a run: its model, endpoint and the sorted set of its records' keys.

    A collection is sorted here; an iterator must give the keys sorted and distinct (as
    the night's store lists them), and is hashed as it goes: a million keys held at once
    for sorting were the largest thing a million-record night had in memory.

    Example:
        >>> run_key("m", "u", ["b", "a", "b"]) == run_key("m", "u", iter(["a", "b"]))
        True
    """
    digest = hashlib.sha256(f"{model}\n{base_url}\n".encode())
    if isinstance(custom_ids, Collection):
        custom_ids = sorted(set(custom_ids))
    previous: str | None = None
    for custom_id in custom_ids:
        if previous is not None and custom_id <= previous:
            raise ValueError(f"custom ids out of order: {custom_id!r} after {previous!r}")
        digest.update(custom_id.encode() + b"\n")
        previous = custom_id
    return digest.hexdigest()[:32]


class RunStore(Protocol):
    """Where the state of runs is kept, by run key."""

    def load(self, key: str) -> str | None: ...
    def save(self, key: str, state: str) -> None: ...
    def remove(self, key: str) -> None: ...


class FolderStore:
    """One JSON file per run in `folder`, written atomically: one host only."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        """The file of run `key`."""
        return self.folder / f"batch-run-{key}.json"

    def load(self, key: str) -> str | None:
        """The run's state, None when it has no file."""
        path = self.path(key)
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def save(self, key: str, state: str) -> None:
        """Replace the run's file in one step."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(state, encoding="utf-8")
        os.replace(temporary, path)

    def remove(self, key: str) -> None:
        """Remove the run's file (the folder stays: another run may be writing in it)."""
        self.path(key).unlink(missing_ok=True)


class LedgerStore:
    """The runs in the record ledger (every host that opens it sees them).

    `legacy`: the folder where runs started before the upgrade left their files; a run
    found only there is moved into the ledger on its first load.
    """

    def __init__(self, ledger: Ledger, legacy: FolderStore | None = None) -> None:
        self.ledger, self.legacy = ledger, legacy

    def load(self, key: str) -> str | None:
        """The run's state from the ledger, or moved there from the legacy folder."""
        state = self.ledger.load_batch_run(key)
        if state is None and self.legacy is not None:
            state = self.legacy.load(key)
            if state is not None:
                self.ledger.save_batch_run(key, state)  # saved before the file goes
                self.legacy.remove(key)
        return state

    def save(self, key: str, state: str) -> None:
        """Save the run's state in the ledger."""
        self.ledger.save_batch_run(key, state)

    def remove(self, key: str) -> None:
        """Forget the run in the ledger."""
        self.ledger.remove_batch_run(key)


class BatchLedger:
    """The batches a run has created, by round."""

    def __init__(self, store: RunStore, key: str, data: dict[str, Any]) -> None:
        self.store, self.key, self.data = store, key, data

    @classmethod
    def open(cls, where: str | Path | RunStore, key: str) -> BatchLedger:
        """The state of run `key` in a folder or a store (empty when the run is new)."""
        store = FolderStore(where) if isinstance(where, str | Path) else where
        state = store.load(key)
        if state is not None:
            return cls(store, key, json.loads(state))
        ledger = cls(store, key, {"run": key, "attempt": uuid.uuid4().hex, "rounds": {}})
        ledger._save()  # saved before any batch is created, with the name batches carry
        return ledger

    @classmethod
    def open_in(cls, ledger: Ledger, key: str, legacy: str | Path | None = None) -> BatchLedger:
        """The state of run `key` in the record `ledger`; `legacy`: a folder to migrate from."""
        return cls.open(LedgerStore(ledger, FolderStore(legacy) if legacy else None), key)

    @property
    def run_name(self) -> str:
        """What this run's batches carry in their metadata: the run and this attempt at it.

        A restarted run reads the same state, so it finds batches by this name; a later run
        of the same inputs (after this one finished) has a new one, so it never picks up
        this run's batches.
        """
        return f"{self.key}-{self.data.get('attempt', '')}"

    def batches(self, round_number: int) -> list[dict[str, Any]]:
        """The batches created in `round_number`, in order."""
        found: list[dict[str, Any]] = self.data["rounds"].get(str(round_number), [])
        return found

    def add(
        self, round_number: int, span: tuple[str, str, int], file_id: str, batch_id: str
    ) -> None:
        """Record a created batch over `span` (first and last custom id, how many), saved
        before returning."""
        first, last, count = span
        entry = {
            "first": first,
            "last": last,
            "count": count,
            "input_file_id": file_id,
            "batch_id": batch_id,
        }
        self.data["rounds"].setdefault(str(round_number), []).append(entry)
        self._save()

    def all_batches(self) -> list[dict[str, Any]]:
        """Every batch the run created, round after round (a resumed run's earlier ones too)."""
        rounds = self.data["rounds"]
        return [entry for number in sorted(rounds, key=int) for entry in rounds[number]]

    @staticmethod
    def span(entry: dict[str, Any]) -> tuple[str, str, int]:
        """The custom-id range of a recorded batch (a state saved before ranges listed its ids)."""
        if "custom_ids" in entry:
            ids = list(entry["custom_ids"])
            return (ids[0], ids[-1], len(ids)) if ids else ("", "", 0)
        return str(entry["first"]), str(entry["last"]), int(entry["count"])

    def _save(self) -> None:
        self.store.save(self.key, json.dumps(self.data))

    def remove(self) -> None:
        """Forget the run: every record has ended."""
        self.store.remove(self.key)
