"""One run per output: `hold_outputs` holds a lock on the output and the quarantine for
the run's whole life, and refuses a second run on either at once.

A local file is locked with `flock` (the kernel drops it when the process ends); an
object on a store has no lock, so only the runs of this process are seen there."""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.flows.outputs.paths import Target, lock_path
from prefect_openai_chat.storage import Location
from prefect_openai_chat.tasks import run_logger

if sys.platform != "win32":
    import fcntl


# --- one run per output: a lock held for the run's whole life --------------------------------

_HELD: ContextVar[frozenset[Path | str]] = ContextVar(
    "prefect_openai_chat_held_outputs", default=frozenset()
)
_OBJECTS_HELD: set[str] = set()  # URLs a run of this process writes (no lock on a store)
_OBJECTS_LOCK = threading.Lock()


def _hold_object(role: str, target: Location) -> str:
    """Refuse `target` when another run of this process writes it; the key to release.

    Runs on other processes or hosts cannot be seen: an object store has no lock, so
    the deployment's concurrency limit keeps them apart (docs/scale-out.md).
    """
    with _OBJECTS_LOCK:
        if target.url in _OBJECTS_HELD:
            raise InvalidInputError(
                f"another run of this process is writing {role} {target.url!r}; two runs on"
                f" one {role} would replace each other's files: wait for that run to finish,"
                f" or choose another {role} URL"
            )
        _OBJECTS_HELD.add(target.url)
    return target.url


def _release_object(key: str) -> None:
    with _OBJECTS_LOCK:
        _OBJECTS_HELD.discard(key)


def _one_kind(output: Target, quarantine: Target) -> None:
    """Refuse an output and a quarantine of which one is local and the other on a store:
    they are published as one step, which needs one kind of commit."""
    if isinstance(output, Location) != isinstance(quarantine, Location):
        raise InvalidInputError(
            f"output {str(output)!r} and quarantine {str(quarantine)!r}: put both on local"
            " paths or both on object storage (URLs); they are published as one step"
        )


def _holder(fd: int) -> str:
    """Who holds a lock file, as its holder wrote it (`host:pid`), for messages."""
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
    except OSError:
        return "unknown"


def _lock(role: str, target: Path) -> int | None:
    """Take `target`'s lock without waiting; None where the OS has no `flock`.

    The kernel drops the lock when the process ends, however it ends: a crash never
    leaves a stale lock (the file it leaves is locked by nobody).
    """
    if sys.platform == "win32":  # pragma: no cover - no flock there
        return None
    path = lock_path(target)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise InvalidInputError(
                f"another run is writing {role} {str(target)!r} (process {holder}, which holds"
                f" {path}); two runs on one {role} would replace each other's files: wait"
                f" for that run to finish, or choose another {role} path"
            ) from None
        except OSError as exc:  # a file system without locks: run unguarded, not refused
            os.close(fd)
            run_logger().warning(
                "cannot lock %s (%s): a second run on %s would not be refused", path, exc, target
            )
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:  # not a file its last holder removed meanwhile
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{socket.gethostname()}:{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)


@contextmanager
def hold_outputs(output: Target, quarantine: Target) -> Iterator[None]:
    """Hold the locks of `output` and `quarantine` while the block runs, or refuse at once.

    A second run on either file gets an `InvalidInputError` naming it before it writes
    or calls anything (it does not wait: it would only overwrite the first run's result
    later, paying again). Re-entrant within one run (its context): a sharded run holds
    its outputs while its shards run and while it merges them. On object storage only
    the runs of this process are seen (`_hold_object`).
    """
    _one_kind(output, quarantine)
    held = _HELD.get()
    taken: list[tuple[Path | str, int | None]] = []
    try:
        for role, target in (("output", output), ("quarantine", quarantine)):
            key = target.url if isinstance(target, Location) else lock_path(target).resolve()
            if key in held or key in {k for k, _ in taken}:
                continue
            if isinstance(target, Location):
                taken.append((_hold_object(role, target), None))
            else:
                taken.append((key, _lock(role, target)))
        token = _HELD.set(held | {k for k, _ in taken})
        try:
            yield
        finally:
            _HELD.reset(token)
    finally:
        for key, fd in reversed(taken):
            if isinstance(key, str):
                _release_object(key)
            elif fd is not None:
                key.unlink(missing_ok=True)  # removed while held: see the inode check in _lock
                os.close(fd)
