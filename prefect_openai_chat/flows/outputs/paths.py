"""Where a run writes, checked before any call: a known kind by extension, a folder
(a bucket) that can be written, and no two roles (output, quarantine, ledger) on one file."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.storage import (
    Location,
    is_url,
    journal_for,
    local_path,
    locate,
)
from prefect_openai_chat.storage.urls import storage_errors

SUFFIXES = (".jsonl", ".ndjson", ".csv", ".parquet", ".sqlite", ".db")

Target = Path | Location  # where a sink's rows end: a local file, or an object on a store


def check_writable(
    path: str | Path | Location, what: str, storage_options: dict[str, Any] | None = None
) -> Target:
    """The target as a `Path` (a `Location` for a URL), after checking its kind and that
    its folder (its bucket) can be written."""
    if isinstance(path, Location) or is_url(path):
        return _check_object(
            path if isinstance(path, Location) else str(path), what, storage_options
        )
    target = local_path(path)
    _check_suffix(target.suffix, what, str(target))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        probe = target.parent / f".{target.name}.probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise InvalidInputError(f"{what} {str(target)!r} cannot be written: {exc}") from exc
    if target.exists() and target.is_dir():
        raise InvalidInputError(f"{what} {str(target)!r} is a directory")
    return target


def _check_suffix(suffix: str, what: str, name: str) -> None:
    if suffix.lower() not in SUFFIXES:
        raise InvalidInputError(
            f"{what} {name!r}: use one of {', '.join(SUFFIXES)} as the file extension"
        )


def _check_object(
    path: str | Location, what: str, storage_options: dict[str, Any] | None
) -> Location:
    """An output on a store: its kind, and that a probe object beside it can be written."""
    target = path if isinstance(path, Location) else locate(path, storage_options)
    _check_suffix(target.suffix, what, str(target))
    with storage_errors(f"{what} {str(target)!r} cannot be written"):
        if target.fs.isdir(target.path):
            raise InvalidInputError(f"{what} {str(target)!r} is a folder (a prefix)")
        probe = target.sibling(f".{target.name}.probe-{uuid.uuid4().hex}")
        probe.write_bytes(b"")
        probe.remove()
    return target


def _same_file(a: Target, b: Target) -> bool:
    if isinstance(a, Location) or isinstance(b, Location):  # URLs are normalised
        return isinstance(a, Location) and isinstance(b, Location) and a.url == b.url
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links too
    except OSError:
        return False


def journal_path(output: Target) -> Target:
    """The commit journal of a run writing `output`: `.<name>.commit` beside it."""
    if isinstance(output, Location):
        return journal_for(output)
    return output.with_name(f".{output.name}.commit")


def lock_path(target: Path) -> Path:
    """The lock a run writing `target` holds for its whole life: `.<name>.lock` beside it."""
    return target.with_name(f".{target.name}.lock")


_TEMPORARY = re.compile(r"^\.(.+)\.(?:tmp|probe)-[0-9a-f]+(?:-journal|-wal|-shm)?$")
_CHOSEN = ("output", "quarantine", "cache")  # the roles a caller chooses a path for


def _files_of(role: str, path: Target) -> list[tuple[str, Target]]:
    """`path` and the files a run writes beside it in `role`, as messages name them."""
    files: list[tuple[str, Target]] = [(role, path)]
    if role in ("output", "quarantine") and isinstance(path, Path):
        files.append((f"{role}'s lock file", lock_path(path)))
    if role == "output":
        files.append(("output's commit journal", journal_path(path)))
    return files


def _clash(a: Target, b: Target) -> bool:
    """Whether `a` is `b`, or a temporary file a run writes for `b` (or the other way)."""
    if _same_file(a, b):
        return True
    for one, other in ((a, b), (b, a)):
        match = _TEMPORARY.match(one.name)
        if match:
            name = match.group(1)
            base = one.sibling(name) if isinstance(one, Location) else one.with_name(name)
            if _same_file(base, other):
                return True
    return False


def _where(path: Target) -> str:
    """The file as messages spell it in full: the URL, or the resolved path."""
    return str(path) if isinstance(path, Location) else str(path.resolve())


def _inside(path: Target, folder: Path) -> bool:
    if isinstance(path, Location):
        return False  # a part folder is local
    resolved = path.resolve()
    return resolved == folder.resolve() or folder.resolve() in resolved.parents


def check_distinct(roles: dict[str, Target | None], folders: dict[str, Path] | None = None) -> None:
    """Refuse two roles on one file: writing one would overwrite the other (or the input).

    `roles` maps a role ("source", "output", "quarantine", "cache ...") to its file; each
    counts with the files written beside it (lock, commit journal, temporaries).
    `folders` are folders a run writes into (a sharded run's parts): no file may be one
    or lie inside. Paths are compared after resolving `.`, `..`, relative spellings,
    symbolic and hard links; URLs as their filesystem normalises them (`S3://b/x.jsonl`
    and `s3://b/x.jsonl` are one object).

    Example:
        >>> from pathlib import Path
        >>> try:
        ...     check_distinct({"output": Path("a.jsonl"), "cache": Path("./a.jsonl")})
        ... except InvalidInputError as exc:
        ...     print(str(exc).split(",")[0])
        output and cache must be different files
    """
    files = [
        (role, label, path)
        for role, base in roles.items()
        if base is not None
        for label, path in _files_of(role, base)
    ]
    for i, (role, first, a) in enumerate(files):
        for other, second, b in files[i + 1 :]:
            if role != other and _clash(a, b):
                spelled = str(a) if str(a) == str(b) else f"{str(a)!r} and {str(b)!r}"
                fix = next(r for r in (other, role, "output") if r.split(" (")[0] in _CHOSEN)
                raise InvalidInputError(
                    f"{first} and {second} must be different files, both are {spelled}"
                    f" ({_where(a)}): the run would overwrite its {first}; choose another"
                    f" {fix.split(' (')[0]} path"
                )
    for folder_role, folder in (folders or {}).items():
        for _, label, path in files:
            if _inside(path, folder):
                raise InvalidInputError(
                    f"{label} {str(path)!r} is inside {folder_role} {str(folder)!r}, which the"
                    f" run writes and removes: choose a {label.split(' (')[0]} path outside it"
                )
