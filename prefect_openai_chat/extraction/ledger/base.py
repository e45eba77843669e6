"""What every ledger backend offers, and what it stores.

A ledger maps an extraction's cache key (`extraction_cache_key`) to the JSON of the
record's final outcome, and hands out claims so that two workers never pay for the
same record: a worker *claims* a key before it calls the API, under a *lease* it
renews while the call runs; it *completes* the key with the final outcome, or
*releases* it after a transient failure. A claim whose lease ran out (its worker died)
can be claimed again by anyone. Only final outcomes are stored. A raw model answer is
kept up to `RAW_OUTPUT_LIMIT` bytes (`cap_raw_output`), here and in the quarantine
file, with a marker saying how much was cut.

Example:
    >>> import tempfile, os
    >>> from prefect_openai_chat.extraction.ledger import SqliteLedger
    >>> ledger = SqliteLedger(os.path.join(tempfile.mkdtemp(), "records.sqlite"))
    >>> ledger.claim_many(["k"], owner="worker-1", lease_s=30)
    {'k'}
    >>> ledger.claim_many(["k"], owner="worker-2", lease_s=30)  # a live lease: not granted
    set()
    >>> ledger.complete("k", '{"ok": true}')
    >>> ledger.get_many(["k", "missing"])
    {'k': '{"ok": true}'}
    >>> ledger.close()
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from prefect_openai_chat.redaction import cap_text
from prefect_openai_chat.results import RAW_OUTPUT_LIMIT as RAW_OUTPUT_LIMIT
from prefect_openai_chat.results import REASON_LIMIT

LEASE_S = 60.0  # a claim's lease; a dead worker's records are free again after it
RENEW_EVERY_S = LEASE_S / 4  # how often a live worker renews the leases it holds
POLL_S = 0.5  # how often a worker waiting for another's claim looks at the ledger
T = TypeVar("T")


@runtime_checkable
class Ledger(Protocol):
    """Finished records and live claims, shared by every worker that opens the same ledger."""

    def attempt(self, method: Callable[..., T], *args: Any) -> tuple[bool, T | None]:
        """Run `method` (one of this ledger's) now if it needs no wait: `(True, result)`;
        else `(False, None)`, nothing done, for the caller to run it where waiting is fine
        (`RecordClaims` runs it in a worker thread then)."""
        ...

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """The stored outcomes (JSON) of those `keys` that are finished."""
        ...

    def claim_many(self, keys: Iterable[str], owner: str, lease_s: float) -> set[str]:
        """Claim `keys` for `owner` for `lease_s` seconds; returns the keys granted.

        A key is granted when it is not finished and nobody holds a live lease on it
        (a lease that ran out counts as none). A lease is never granted twice, not
        even to the same owner: two records with the same key in one batch pay once.
        """
        ...

    def renew(self, keys: Iterable[str], owner: str, lease_s: float) -> set[str]:
        """Extend `owner`'s leases on `keys` to `lease_s` from now; returns those still held."""
        ...

    def complete(self, key: str, outcome: str) -> None:
        """Store `key`'s final outcome (JSON) and end any claim on it; long raw outputs capped."""
        ...

    def complete_many(self, outcomes: Sequence[tuple[str, str]]) -> None:
        """`complete` for each `(key, outcome)`, in one transaction (the last of a key wins)."""
        ...

    def release(self, keys: Iterable[str], owner: str) -> None:
        """Give up `owner`'s claims on unfinished `keys` (after a transient failure)."""
        ...

    def holders(self, keys: Iterable[str]) -> dict[str, str]:
        """The owner of each unfinished key of `keys` that is claimed (live or lapsed)."""
        ...

    def load_batch_run(self, run_key: str) -> str | None:
        """The saved state (JSON) of the Batch API run `run_key`, None when there is none."""
        ...

    def save_batch_run(self, run_key: str, state: str) -> None:
        """Save (replace) the state (JSON) of the Batch API run `run_key`."""
        ...

    def remove_batch_run(self, run_key: str) -> None:
        """Forget the Batch API run `run_key` (every record of it has ended)."""
        ...

    def __len__(self) -> int:
        """The number of finished records."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...


def new_owner() -> str:
    """A claim owner naming this host and process, unique per call.

    Example:
        >>> a, b = new_owner(), new_owner()
        >>> a != b and a.split(":")[1] == b.split(":")[1]
        True
    """
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def owner_is_gone(owner: str) -> bool:
    """True when `owner` names a process of this host that no longer runs.

    Its claims need not wait for their lease: nobody will renew them. An owner of another
    host, or a live (or reused) process id, is not gone: its lease decides.

    Example:
        >>> owner_is_gone(new_owner()), owner_is_gone("elsewhere:1:abc")
        (False, False)
    """
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, as another user's process
        return False
    return False


def unique(keys: Iterable[str]) -> list[str]:
    """`keys` without repeats, sorted: claimers lock rows in one order, so never deadlock.

    Example:
        >>> unique(["b", "a", "b"])
        ['a', 'b']
    """
    return sorted(set(keys))


def chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    """`items` in slices of at most `size`.

    Example:
        >>> [list(c) for c in chunks(["a", "b", "c"], 2)]
        [['a', 'b'], ['c']]
    """
    return (items[start : start + size] for start in range(0, len(items), size))


def cap_raw_output(text: str | None, limit: int = RAW_OUTPUT_LIMIT) -> str | None:
    """`text` cut to `limit` bytes of UTF-8, with a marker saying how much was cut.

    Example:
        >>> cap_raw_output("x" * 10, limit=4)
        'xxxx\\n[prefect-openai-chat: 6 more bytes cut; the raw output had 10 bytes]'
    """
    return cap_text(text, limit, "the raw output")


def capped(outcome: str) -> str:
    """A stored outcome's JSON with its `last_raw_output` and `reason` capped (parsed only
    when long).

    Example:
        >>> capped('{"ok": true}')
        '{"ok": true}'
    """
    if len(outcome) * 4 <= REASON_LIMIT:
        return outcome
    value = json.loads(outcome)
    if not isinstance(value, dict):
        return outcome
    limits = {
        "last_raw_output": (RAW_OUTPUT_LIMIT, "the raw output"),
        "reason": (REASON_LIMIT, "the reason"),
    }
    changed = False
    for name, (limit, what) in limits.items():
        text = value.get(name)
        if isinstance(text, str) and (short := cap_text(text, limit, what)) != text:
            value[name], changed = short, True
    return json.dumps(value, ensure_ascii=False) if changed else outcome
