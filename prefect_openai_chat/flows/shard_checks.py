"""What a sharded run refuses before any call: what the workers of other hosts cannot see
(`check_across_hosts`: a SQLite ledger, local paths) and credentials a deployment's
shards cannot get safely (`check_options_for_deployment`).

Example:
    >>> is_local_path("s3://bucket/rows.jsonl"), is_local_path("out/rows.jsonl")
    (False, True)
"""

from __future__ import annotations

from typing import Any

from prefect_openai_chat.blocks.storage_options import saved_name, slug_of
from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.extraction.ledger import ledger_kind, ledger_role
from prefect_openai_chat.redaction import MASK
from prefect_openai_chat.storage import masked_options
from prefect_openai_chat.tasks import ledger_path


def check_options_for_deployment(deployment: str | None, storage_options: Any) -> Any:
    """What each shard gets as `storage_options`; refuses credentials a deployment's shards
    cannot get safely.

    A deployment's parameters are stored by the Prefect server in the clear (a `SecretDict`
    would arrive masked): so a saved credentials block is sent as its name
    ("aws-credentials/etl"), which each worker loads from the Prefect API, and inline
    secrets are refused.
    """
    if deployment is None or storage_options is None or isinstance(storage_options, str):
        return storage_options
    name = saved_name(storage_options)
    if name is not None:
        return name
    if slug_of(storage_options) is not None:
        raise InvalidInputError(
            f"shard_deployment={deployment!r} with an unsaved {slug_of(storage_options)} block"
            " as storage_options: the workers load a block by its name. Save it"
            " (block.save('etl-storage')) and pass it, or its name"
            f" '{slug_of(storage_options)}/etl-storage'"
        )
    if hasattr(storage_options, "get_secret_value") or _masks(masked_options(storage_options)):
        raise InvalidInputError(
            f"shard_deployment={deployment!r} with credentials in storage_options: a"
            " deployment's parameters are stored by the Prefect server in the clear (and a"
            " SecretDict arrives masked), so each shard would not get them safely. Save them"
            " in a credentials block (prefect-aws AwsCredentials, prefect-gcp GcpCredentials,"
            " prefect-azure AzureBlobStorageCredentials) and pass its name,"
            " storage_options='aws-credentials/etl': each worker loads it from the Prefect"
            " API; or give the workers their credentials through their environment"
            " (AWS_ACCESS_KEY_ID, an instance or service-account role, the work pool's job"
            " variables) and pass in storage_options only what is not secret"
            " (client_kwargs.endpoint_url, ...)"
        )
    return storage_options


def _masks(shown: Any) -> bool:
    """Whether options as shown (`masked_options`) hide a value."""
    if isinstance(shown, dict):
        return any(_masks(value) for value in shown.values())
    return bool(shown == MASK)


def is_local_path(value: Any) -> bool:
    """True for a path of this host's file system (a URL of another scheme is not).

    Example:
        >>> is_local_path("out/rows.jsonl"), is_local_path("s3://bucket/rows.jsonl")
        (True, False)

    `memory://` counts as local: each process has its own.
    """
    text = str(value)
    return "://" not in text or text.lower().startswith(("file://", "memory://"))


def check_across_hosts(
    deployment: str | None, cache: Any, paths: dict[str, Any], allow_local_paths: bool
) -> None:
    """Refuse, before any call, a deployment's shards with what other hosts cannot see.

    The flow runs of `deployment` run on the workers of its pool, maybe on other hosts
    (containers, machines) that share no disk with this one: they would not see a SQLite
    ledger (each would pay for every record again) nor local files. `allow_local_paths`
    says every worker runs on this host, or sees the paths through a shared mount.
    """
    if deployment is None or allow_local_paths:
        return
    seen: list[str] = []
    if ledger_kind(cache) == "sqlite":
        where = ledger_path(cache)
        seen.append(
            f"{ledger_role(cache)} is the SQLite file {str(where)!r}: use a shared ledger,"
            " cache='postgresql://user@host/db' (or PREFECT_OPENAI_CHAT_CACHE on every"
            " worker)"
        )
    local = [f"{role} {str(value)!r}" for role, value in paths.items() if is_local_path(value)]
    if local:
        seen.append(
            f"{', '.join(local)} {'is a local path' if len(local) == 1 else 'are local paths'}:"
            " use locations every worker reaches (object-storage URLs: s3://, gs://, az://;"
            " the shards' parts then live under the output's URL too)"
        )
    if seen:
        raise InvalidInputError(
            f"shard_deployment={deployment!r} runs the shards as flow runs of a work pool,"
            " whose workers may run on other hosts that do not see this host's files: "
            + "; ".join(seen)
            + ". If every worker of the pool runs on this host (a SQLite ledger needs that),"
            " or sees these paths under the same names through a shared mount (with a"
            " postgresql:// ledger), pass allow_local_paths=True"
        )
