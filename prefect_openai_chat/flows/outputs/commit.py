"""The output and the quarantine moved into place as one step, and its recovery.

A journal naming every move is written first; a crash before it leaves every target as
it was, a crash after it leaves the journal, which `recover_outputs` finishes (and
removes the temporaries of processes that are gone). On object storage the moves are
uploads and copies (`storage.commit_objects`, `storage.recover_objects`)."""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.flows.outputs.locks import hold_outputs
from prefect_openai_chat.flows.outputs.paths import Target, journal_path
from prefect_openai_chat.storage import (
    Location,
    commit_objects,
    journal_for,
    recover_objects,
)

if TYPE_CHECKING:
    from prefect_openai_chat.flows.outputs.sink import Sink


def temporary_path(path: Target) -> Path:
    """Where this process writes `path` before moving it into place: `.<name>.tmp-<pid>`
    beside it; for an object on a store, in a local temporary folder of its own."""
    if isinstance(path, Location):
        folder = Path(tempfile.mkdtemp(prefix="prefect-openai-chat-"))
        return folder / f".{path.name}.tmp-{os.getpid()}"
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def fsync(path: Path, directory: bool = False) -> None:
    """Flush a file (or a folder's entries) to disk; a no-op where the OS cannot."""
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    """Whether another process with this id runs (our own id counts as gone: not yet written)."""
    if pid == os.getpid():
        return False
    if os.name == "nt":  # pragma: no cover - os.kill would end the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _stale_temporaries(target: Path) -> list[Path]:
    pattern = re.compile(
        rf"^\.{re.escape(target.name)}\.(?:tmp|probe)-(\d+)(?:-journal|-wal|-shm)?$"
    )
    found = []
    if target.parent.is_dir():
        for entry in target.parent.iterdir():
            match = pattern.match(entry.name)
            if match and not _alive(int(match.group(1))):
                found.append(entry)
    return sorted(found)


def recover_outputs(output: Target, quarantine: Target) -> list[str]:
    """Finish a commit a crash interrupted, and remove temporaries of dead processes.

    Run before a run writes `output` and `quarantine` (`open_outputs` does); returns what
    it did, one sentence each. It holds both files' locks (`hold_outputs`), so a live
    run's journal and temporaries, even of this process, are never taken for a dead one's:
    while another run writes them it refuses. On object storage `storage.recover_objects`
    does the same with copies: every temporary object left beside them is removed.
    """
    with hold_outputs(output, quarantine):
        if isinstance(output, Location) and isinstance(quarantine, Location):
            return recover_objects([output, quarantine], journal_for(output))
        return _recover(_local(output), _local(quarantine))


def _recover(output: Path, quarantine: Path) -> list[str]:
    done: list[str] = []
    journal = _local(journal_path(output))
    if journal.is_file():
        try:
            plan = json.loads(journal.read_text(encoding="utf-8"))
            plan["moves"] = [(str(tmp), str(target)) for tmp, target in plan["moves"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise RuntimeError(
                f"the commit journal {journal} cannot be read ({exc}); move each temporary"
                " file it names into place by hand, or delete it to keep the files as they are"
            ) from exc
        if not _alive(int(plan.get("pid", 0))):
            for tmp, target in plan["moves"]:
                if Path(tmp).exists():
                    os.replace(tmp, target)
                    done.append(f"moved {tmp} to {target} (a commit interrupted by a crash)")
            for folder in {Path(target).parent for _, target in plan["moves"]}:
                fsync(folder, directory=True)
            journal.unlink()
    for target in (output, quarantine, journal):
        for stale in _stale_temporaries(target):
            stale.unlink(missing_ok=True)
            done.append(f"removed {stale}, left by a process that is gone")
    return done


def commit(sinks: list[Sink], journal: Target) -> None:
    """Move every sink's file into place as one step, through a journal written first.

    A crash before the journal is in place leaves every target as it was; a crash after
    leaves the journal, and the next `recover_outputs` finishes the moves. On object
    storage the moves are uploads and copies (`storage.commit_objects`).
    """
    if isinstance(journal, Location):
        _commit_objects(sinks, journal)
        return
    targets = [_local(sink.path) for sink in sinks]
    try:
        for sink in sinks:
            sink.close()
        moves = [
            [str(s.tmp.absolute()), str(t.absolute())] for s, t in zip(sinks, targets, strict=True)
        ]
        staged = temporary_path(journal)
        staged.write_text(json.dumps({"pid": os.getpid(), "moves": moves}), encoding="utf-8")
        fsync(staged)
        os.replace(staged, journal)
        fsync(journal.parent, directory=True)
    except BaseException:
        for sink in sinks:
            sink.discard()
        temporary_path(journal).unlink(missing_ok=True)
        raise
    for sink, target in zip(sinks, targets, strict=True):
        os.replace(sink.tmp, target)
    for folder in {target.parent for target in targets}:
        fsync(folder, directory=True)
    journal.unlink()


def _local(target: Target) -> Path:
    """A target known to be local (the pair was checked by `hold_outputs`)."""
    if isinstance(target, Location):
        raise InvalidInputError(f"{target} is on object storage, its pair is local")
    return target


def _commit_objects(sinks: list[Sink], journal: Location) -> None:
    """Publish every sink's local file onto its object, then drop the local files."""
    try:
        for sink in sinks:
            sink.close()
        uploads = [(sink.tmp, sink.path) for sink in sinks if isinstance(sink.path, Location)]
        commit_objects(uploads, journal, run_id=uuid.uuid4().hex)
    finally:
        for sink in sinks:
            sink.discard()
