"""Publish a run's files on an object store, which has no atomic rename, as one step.

A store writes each object whole (a reader sees the old object or the new one, never
half), but it cannot rename several objects at once. So a commit is:

1. each local file is uploaded (in parts of `PART_SIZE`) to a temporary object beside
   its target (`.<name>.tmp-<run id>`): the targets are untouched, last night's files readable;
2. a journal object (`.<output name>.commit`) naming every temporary and its target is
   written, in one request: from here on the commit is decided;
3. each temporary is copied onto its target (a copy on the store's side, atomic per
   object) and removed;
4. the journal is removed.

A crash before step 2 leaves the targets as they were (and temporaries, removed by the
next run); a crash after it leaves the journal, and the next run finishes steps 3 and 4
(`recover_objects`) before it starts. Between the copies of step 3 a reader may see the
new output with the old quarantine, for as long as one copy takes.

Example:
    >>> import pathlib, tempfile
    >>> from prefect_openai_chat.storage import commit_objects, journal_for, locate
    >>> local = pathlib.Path(tempfile.mkdtemp()) / "rows.jsonl"
    >>> _ = local.write_text('{"id": 1}\\n')
    >>> out = locate("memory://night/out.jsonl")
    >>> commit_objects([(local, out)], journal_for(out), run_id="r1")
    >>> out.read_bytes(), [s.name for s in out.siblings(".out.jsonl")]
    (b'{"id": 1}\\n', [])
    >>> out.remove()
"""

from __future__ import annotations

import json
from contextlib import suppress
from pathlib import Path, PurePosixPath

from prefect_openai_chat.storage.urls import Location


def temporary_for(target: Location, run_id: str) -> Location:
    """Where run `run_id` uploads `target` before the commit: `.<name>.tmp-<run id>` beside it."""
    return target.sibling(f".{target.name}.tmp-{run_id}")


def journal_for(output: Location) -> Location:
    """The commit journal of a run writing `output`: `.<name>.commit` beside it."""
    return output.sibling(f".{output.name}.commit")


def commit_objects(uploads: list[tuple[Path, Location]], journal: Location, run_id: str) -> None:
    """Put each local file onto its target object, all through one journal (see the module).

    An error before the journal is written removes the temporaries and leaves every
    target as it was; after it, the next `recover_objects` finishes the copies.
    """
    finish_objects(stage_objects(uploads, journal, run_id), journal)


def stage_objects(
    uploads: list[tuple[Path, Location]], journal: Location, run_id: str
) -> list[tuple[Location, Location]]:
    """Steps 1 and 2: upload each file to its temporary object, then write the journal.

    Returns the moves (temporary, target) that `finish_objects` makes; on an error the
    temporaries are removed and the targets were never touched.
    """
    moves = [(temporary_for(target, run_id), target) for _, target in uploads]
    try:
        for (local, _), (tmp, _) in zip(uploads, moves, strict=True):
            tmp.upload(local)
        plan = {"run": run_id, "moves": [[tmp.url, target.url] for tmp, target in moves]}
        journal.write_bytes(json.dumps(plan).encode("utf-8"))
    except BaseException:
        for tmp, _ in moves:
            with suppress(Exception):
                tmp.remove()
        raise
    return moves


def finish_objects(moves: list[tuple[Location, Location]], journal: Location) -> list[str]:
    """Steps 3 and 4: copy every temporary still there onto its target and remove it, then
    remove the journal; returns what it copied, one sentence each."""
    done = []
    for tmp, target in moves:
        if tmp.exists():  # gone: copied and removed before a crash
            tmp.copy_to(target)
            tmp.remove()
            done.append(f"copied {tmp} to {target} (a commit interrupted by a crash)")
    journal.remove()
    return done


def _planned_moves(journal: Location, targets: list[Location]) -> list[tuple[Location, Location]]:
    """The moves a journal names, as Locations on the targets' filesystems."""
    try:
        plan = json.loads(journal.read_bytes())
        pairs = [(str(tmp), str(target)) for tmp, target in plan["moves"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(
            f"the commit journal {journal} cannot be read ({exc}); copy each temporary object"
            " it names onto its target by hand, or delete it to keep the objects as they are"
        ) from exc
    known = {target.url: target for target in targets}
    moves = []
    for tmp_url, target_url in pairs:
        target = known.get(target_url) or Location(
            target_url, journal.fs, journal.fs._strip_protocol(target_url)
        )
        tmp = target.sibling(PurePosixPath(tmp_url).name)
        moves.append((tmp, target))
    return moves


def recover_objects(targets: list[Location], journal: Location) -> list[str]:
    """Finish a commit a crash interrupted, then remove every temporary object left beside
    `targets`; returns what it did, one sentence each.

    Call it before a run writes `targets`, when no other run writes them: an object store
    has no lock, so a deployment's concurrency limit must keep two runs on one output
    apart (docs/scale-out.md).
    """
    done = []
    if journal.exists():
        done += finish_objects(_planned_moves(journal, targets), journal)
    for target in targets:
        for stale in target.siblings(f".{target.name}.tmp-"):
            stale.remove()
            done.append(f"removed {stale}, left by a run that did not finish")
    return done
