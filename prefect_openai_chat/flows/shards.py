"""Shards of one input file: line ranges decided before any call, and their parts merged back.

A sharded run splits the source's lines into `shards` ranges of about equal size
(`plan_shards`). Each shard runs `extract_records` over its range only (`shard_lines`
narrows what the flow reads) and writes its own output and quarantine *parts*
(JSONL, moved into place atomically; objects under the output's URL when the output
is on object storage: no disk is shared then); `merge_parts` then writes the final output and
quarantine from the parts in shard order and checks, over the whole file, that every
input line ended exactly once.

A shard reads the file from its start, so that a key seen on an earlier line (in an
earlier shard) still sends a later record with that key to quarantine as a duplicate,
exactly as an unsharded run does; only the records of its own range are sent.

Example:
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "in.jsonl"
    >>> _ = path.write_text("".join(f'{{"id": {n}}}\\n' for n in range(10)))
    >>> [(s.first_line, s.last_line) for s in plan_shards(path, 3)]
    [(1, 3), (4, 7), (8, 10)]
    >>> from prefect_openai_chat.flows.sources import read_records
    >>> with shard_lines(4, 7):
    ...     [item.line for item in in_shard(read_records(path))]
    [4, 5, 6, 7]
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, overload

from pydantic import BaseModel

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.flows.sinks import RowNotStorable, open_outputs
from prefect_openai_chat.flows.source_lines import SourceItem
from prefect_openai_chat.flows.sources import Keys, read_records
from prefect_openai_chat.flows.summary import RunTotals
from prefect_openai_chat.storage import Location, is_url, local_path, locate

PartTarget = Path | Location  # a part: a local file, or an object under the output's URL

_LINES: ContextVar[tuple[int, int] | None] = ContextVar("shard_lines", default=None)


@dataclass(frozen=True)
class Shard:
    """One shard: its number (1-based), how many there are, and its lines (inclusive)."""

    number: int
    of: int
    first_line: int
    last_line: int

    @property
    def label(self) -> str:
        """`shard 2/4`, as run names and logs show it."""
        return f"shard {self.number}/{self.of}"

    def holds(self, line: int) -> bool:
        """Whether input line `line` belongs to this shard."""
        return self.first_line <= line <= self.last_line


def open_bytes(source: str | Path | Location) -> IO[bytes]:
    """The source file opened for reading bytes: a local file, or an object in chunks."""
    if isinstance(source, Location):
        return source.open_read()
    if is_url(source):
        return locate(str(source)).open_read()
    return local_path(source).open("rb")


def count_lines(path: str | Path | Location) -> int:
    """How many physical lines the file has (a last line without a newline counts)."""
    lines, last = 0, b"\n"
    with open_bytes(path) as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def plan_shards(source: str | Path | Location, shards: int) -> list[Shard]:
    """Split the file's lines into `shards` ranges of about equal size (fewer if it is short)."""
    if not isinstance(source, str | Path | Location):
        raise InvalidInputError(
            "shards need a .jsonl or .csv file as source (every shard reads its own lines);"
            " write the records to a .jsonl file first"
        )
    if shards < 1:
        raise InvalidInputError(f"shards must be at least 1, got {shards}")
    total = max(count_lines(source), 1)
    shards = min(shards, total)
    bounds = [round(total * n / shards) for n in range(shards + 1)]
    return [
        Shard(number=n + 1, of=shards, first_line=bounds[n] + 1, last_line=bounds[n + 1])
        for n in range(shards)
    ]


@contextmanager
def shard_lines(first_line: int, last_line: int) -> Iterator[None]:
    """Within this block, `extract_records` reads only lines `first_line..last_line`."""
    if first_line < 1 or last_line < first_line:
        raise InvalidInputError(
            f"a shard's lines must be 1 <= first_line <= last_line, got {first_line}..{last_line}"
        )
    token = _LINES.set((first_line, last_line))
    try:
        yield
    finally:
        _LINES.reset(token)


def current_lines() -> tuple[int, int] | None:
    """The line range of the shard being run in this context, if any."""
    return _LINES.get()


def in_shard(items: Iterator[SourceItem]) -> Iterator[SourceItem]:
    """The items of the current shard's lines (all items outside a shard).

    Items before the range are still read (their keys count for duplicates); reading
    stops after the range.
    """
    lines = _LINES.get()
    if lines is None:
        yield from items
        return
    first, last = lines
    for item in items:
        if item.line > last:
            return
        if item.line >= first:
            yield item


def count_in_shard(source: Any, count: int | None) -> int | None:
    """How many records the current shard will read (`count` outside a shard)."""
    lines = _LINES.get()
    if lines is None or not isinstance(source, str | Path | Location):
        return count
    suffix = source.suffix if isinstance(source, Location) else Path(source).suffix
    if suffix.lower() == ".csv":  # a record may span lines: count as it is read
        return sum(1 for _ in in_shard(read_records(source)))
    first, last = lines
    found = 0
    with open_bytes(source) as handle:
        for number, line in enumerate(handle, start=1):
            if number > last:
                break
            if number >= first and line.strip():
                found += 1
    return found


# --- parts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardParts:
    """Where one shard writes: its output and quarantine parts, its summary, its heartbeat.

    Local files in a folder beside the output, or, for an output on object storage,
    objects under a prefix beside it: the parent and the workers then share no disk.
    """

    output: PartTarget
    quarantine: PartTarget
    summary: PartTarget
    heartbeat: PartTarget

    @classmethod
    def in_folder(cls, folder: PartTarget, shard: Shard) -> ShardParts:
        """The parts of `shard` in `folder` (`part-0002.jsonl` and so on)."""
        stem = f"part-{shard.number:04d}"
        names = (f"{stem}.jsonl", f"{stem}.quarantine.jsonl", f"{stem}.summary.json")
        output, quarantine, summary, heartbeat = (
            folder.child(name) if isinstance(folder, Location) else folder / name
            for name in (*names, f"{stem}.alive")
        )
        return cls(output=output, quarantine=quarantine, summary=summary, heartbeat=heartbeat)

    def files(self) -> tuple[PartTarget, ...]:
        """Every file (object) of the part."""
        return (self.output, self.quarantine, self.summary, self.heartbeat)


@overload
def parts_folder(output: Path, run_id: str) -> Path: ...
@overload
def parts_folder(output: Location, run_id: str) -> Location: ...
@overload
def parts_folder(output: PartTarget, run_id: str) -> PartTarget: ...
def parts_folder(output: PartTarget, run_id: str) -> PartTarget:
    """Where one sharded run's parts go: a folder beside a local `output`
    (`.<name>.shards-<run id>`), a prefix beside one on a store (`.<name>.parts-<run id>`)."""
    if isinstance(output, Location):
        return output.sibling(f".{output.name}.parts-{run_id}")
    return output.with_name(f".{output.name}.shards-{run_id}")


def stale_parts(output: Location, run_id: str) -> list[str]:
    """Remove the part prefixes that other sharded runs on `output` left (a parent that
    crashed before its merge); returns what it removed, one sentence each.

    Like `storage.recover_objects`, call it when no other run writes `output`.
    """
    own = f".{output.name}.parts-{run_id}"
    done = []
    for stale in output.siblings(f".{output.name}.parts-"):
        if stale.name != own:
            stale.remove_tree()
            done.append(f"removed {stale}, the parts of a sharded run that did not finish")
    return done


def beat(path: PartTarget) -> None:
    """One heartbeat: touch the file, or write the object anew (its content changes)."""
    if isinstance(path, Location):
        path.write_bytes(f"{time.time():.3f} {os.getpid()}".encode())
    else:
        path.touch()


def beat_mark(path: PartTarget) -> float | bytes | None:
    """What changes with each heartbeat: the file's time, the object's content (the
    reader compares it with its own clock, never another host's); None when absent."""
    if isinstance(path, Location):
        try:
            return path.read_bytes()
        except Exception:  # absent, or the store did not answer: no beat seen this time
            return None
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def write_summary(path: PartTarget, summary: dict[str, Any]) -> None:
    """Write a shard's summary atomically (after its parts are in place)."""
    text = json.dumps(summary, default=str)
    if isinstance(path, Location):
        path.write_bytes(text.encode("utf-8"))  # one PUT: whole or absent
        return
    staged = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    staged.write_text(text, encoding="utf-8")
    os.replace(staged, path)


def read_summary(path: PartTarget) -> dict[str, Any]:
    """A shard's summary, or a clear error when the shard left none."""
    try:
        raw = path.read_bytes()
        data: dict[str, Any] = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise RuntimeError(
            f"the shard's summary {path} cannot be read ({exc}); the shard did not finish:"
            " run the flow again (finished records come from the record cache)"
        ) from exc
    return data


def _jsonl(path: PartTarget) -> Iterator[dict[str, Any]]:
    with open_bytes(path) as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


@dataclass
class SourceCensus:
    """What the parent learns from one streaming pass over the source, without calling."""

    per_shard: list[int]
    keys: Keys


def census(
    source: str | Path | Location, shards: list[Shard], key_field: str | None
) -> SourceCensus:
    """Records per shard and the key counts of the whole file (one streaming pass)."""
    keys = Keys(key_field)
    per_shard = [0] * len(shards)
    index = 0
    for item in read_records(source, keys):
        while not shards[index].holds(item.line):
            index += 1
        per_shard[index] += 1
    return SourceCensus(per_shard=per_shard, keys=keys)


SUMMED = (
    "records", "valid", "quarantined", "repaired", "reprompted", "from_cache",
    "prompt_tokens", "completion_tokens", "cost_usd", "cached_tokens", "batch_records",
    "online_cost_usd", "retries", "http_429s", "circuit_trips",
)  # fmt: skip


def merge_parts(
    shards: list[Shard],
    parts: list[ShardParts],
    expected: SourceCensus,
    output: PartTarget,
    quarantine: PartTarget,
    schema: type[BaseModel] | None,
) -> tuple[RunTotals, list[dict[str, Any]]]:
    """Write `output` and `quarantine` from the shards' parts, in shard order, exactly once.

    Checks, before the files are moved into place, that each shard wrote one row
    (valid or quarantined) per record of its lines, that no quarantined line is
    outside its shard or twice in the file, and that no key is twice in the output.
    A part's row the output cannot hold (`RowNotStorable`) goes to quarantine with
    the reason. Returns the totals over all shards and each shard's own summary.
    The parts are removed afterwards, also when the merge fails (the record ledger
    keeps what the shards paid for: a re-run does not pay again).
    """
    try:
        return _merge(shards, parts, expected, output, quarantine, schema)
    finally:
        remove_parts(parts)


def remove_parts(parts: list[ShardParts]) -> None:
    """Remove the shards' part files, and their folder once it is empty; on a store, every
    object under the parts' prefix (also what a crashed shard's commit left there)."""
    folders: dict[str, Location] = {}
    for part in parts:
        for path in part.files():
            if isinstance(path, Location):
                folder = Location(path.fs.unstrip_protocol(path.folder), path.fs, path.folder)
                folders[folder.url] = folder
            else:
                path.unlink(missing_ok=True)
    for location in folders.values():
        location.remove_tree()
    for local in {p.output.parent for p in parts if isinstance(p.output, Path)}:
        with suppress(OSError):
            local.rmdir()


def _merge(
    shards: list[Shard],
    parts: list[ShardParts],
    expected: SourceCensus,
    output: PartTarget,
    quarantine: PartTarget,
    schema: type[BaseModel] | None,
) -> tuple[RunTotals, list[dict[str, Any]]]:
    totals = RunTotals()
    summaries: list[dict[str, Any]] = []
    seen_keys: set[str] = set()
    seen_lines: set[int] = set()
    with open_outputs(output, quarantine, schema) as (rows, bad):
        for shard, part, records in zip(shards, parts, expected.per_shard, strict=True):
            summary = read_summary(part.summary)
            summaries.append(summary)
            written = refused = 0
            for row in _jsonl(part.output):
                key = str(row.get("_key"))
                if key in seen_keys:
                    raise RuntimeError(
                        f"bookkeeping error: key {key!r} is twice in the output ({shard.label});"
                        " the output files were not replaced"
                    )
                seen_keys.add(key)
                try:
                    rows.write(row)
                except RowNotStorable as exc:
                    line = _line_of(key, expected.keys)
                    if line is not None:
                        seen_lines.add(line)
                    reason = f"not storable: {exc}"
                    totals.add_quarantined(line, key, reason)
                    bad.write(_refused_row(line, key, reason, row))
                    refused += 1
                written += 1
            for row in _jsonl(part.quarantine):
                line = int(row["line"])
                if not shard.holds(line) or line in seen_lines:
                    raise RuntimeError(
                        f"bookkeeping error: quarantined line {line} is outside {shard.label}"
                        f" (lines {shard.first_line}-{shard.last_line}) or twice in the"
                        " quarantine; the output files were not replaced"
                    )
                seen_lines.add(line)
                totals.add_quarantined(line, str(row.get("key")), row.get("reason"))
                bad.write(row)
                written += 1
            if written != records or summary.get("records") != records:
                raise RuntimeError(
                    f"bookkeeping error: {shard.label} holds {records} records of the source,"
                    f" its parts hold {written} rows and its summary {summary.get('records')};"
                    " the output files were not replaced"
                )
            for name in SUMMED:
                setattr(totals, name, getattr(totals, name) + (summary.get(name) or 0))
            totals.valid -= refused  # counted valid by the shard, quarantined here
            totals.quarantined += refused
        if totals.records != rows.rows + bad.rows or totals.valid != rows.rows:
            raise RuntimeError(
                f"bookkeeping error: {totals.records} records in, {rows.rows} written and"
                f" {bad.rows} quarantined; the output files were not replaced"
            )
    totals.duplicate_keys = expected.keys.duplicates
    totals.missing_keys = expected.keys.missing
    return totals, summaries


def _line_of(key: str, keys: Keys) -> int | None:
    """The input line of the record keyed `key`: its `key_field` value's, else the key itself."""
    if key in keys.first_line:
        return keys.first_line[key]
    return int(key) if key.isdigit() else None


def _refused_row(line: int | None, key: str, reason: str, row: dict[str, Any]) -> dict[str, Any]:
    """The quarantine row of a part's output row the merged output cannot hold."""
    value = {k: v for k, v in row.items() if k != "_key"}
    return {
        "line": line,
        "key": key,
        "reason": reason,
        "outcome": "invalid",
        "attempts": 0,  # the calls are in the shard's summary, not in its rows
        "record": value,  # the value as extracted (the input record is not in the parts)
        "last_raw_output": None,
    }
