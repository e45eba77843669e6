"""The record ledger: finished records and live claims, shared by every worker.

A record done on any worker is never paid again, and two workers never pay for the
same record at once: each claims a record before calling the API, under a lease it
renews while the call runs. Two backends behind one `Ledger` protocol: `SqliteLedger`
(one file, the processes of one host; the default) and `PostgresLedger` (one table,
every host). `open_ledger(cache)` opens the one a `cache=` setting names;
`RecordClaims` is what a batch uses while it runs. See docs/scale-out.md.

Example:
    >>> import tempfile, os
    >>> from prefect_openai_chat.extraction.ledger import open_ledger
    >>> ledger = open_ledger(os.path.join(tempfile.mkdtemp(), "records.sqlite"))
    >>> ledger.get_many(["k"])
    {}
    >>> ledger.close()
"""

from prefect_openai_chat.extraction.ledger.base import (
    LEASE_S,
    POLL_S,
    RAW_OUTPUT_LIMIT,
    RENEW_EVERY_S,
    Ledger,
    cap_raw_output,
    new_owner,
)
from prefect_openai_chat.extraction.ledger.claims import RecordClaims
from prefect_openai_chat.extraction.ledger.opening import (
    ENV_VAR,
    ledger_file,
    ledger_kind,
    ledger_role,
    open_ledger,
    resolve_cache,
)
from prefect_openai_chat.extraction.ledger.postgres import PostgresLedger, masked_url
from prefect_openai_chat.extraction.ledger.sqlite import SqliteLedger

__all__ = [
    "ENV_VAR",
    "LEASE_S",
    "POLL_S",
    "RAW_OUTPUT_LIMIT",
    "RENEW_EVERY_S",
    "Ledger",
    "PostgresLedger",
    "RecordClaims",
    "SqliteLedger",
    "cap_raw_output",
    "ledger_file",
    "ledger_kind",
    "ledger_role",
    "masked_url",
    "new_owner",
    "open_ledger",
    "resolve_cache",
]
