"""Credentials for object storage from a Prefect block the user already has.

`storage_options` of `extract_records` takes, besides a dict, a block of prefect-aws
(`AwsCredentials`, `MinIOCredentials`, `S3Bucket`), prefect-gcp (`GcpCredentials`,
`GcsBucket`) or prefect-azure (`AzureBlobStorageCredentials`,
`AzureBlobStorageContainer`), or a saved one's name as `"block-type-slug/name"`
(`"aws-credentials/etl"`): `options_from_block` turns it into the keyword arguments of
the store's fsspec filesystem (s3fs, gcsfs, adlfs). A bucket block gives its
credentials only: the URL names the bucket. The mapping reads the blocks' fields by
name, so none of those packages is imported here (each is needed only to load its
saved blocks by name).

Example:
    >>> from types import SimpleNamespace
    >>> block = SimpleNamespace(
    ...     get_block_type_slug=lambda: "minio-credentials", minio_root_user="etl",
    ...     minio_root_password=None, region_name=None, aws_client_parameters=None)
    >>> options_from_block(block)
    {'key': 'etl'}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import urlparse

from prefect.blocks.core import Block
from prefect.types import SecretDict

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.storage.urls import add_options_source

StorageOptions = dict[str, Any] | SecretDict | Block | str | None
"""What `storage_options` takes: a dict, a `SecretDict`, a credentials block, a saved
block's name ("aws-credentials/etl"), or None (the environment's credentials)."""


def _secret(value: Any) -> Any:
    """The plain value of a pydantic secret (SecretStr, SecretDict), else the value."""
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


def _aws_client(parameters: Any, region: str | None) -> dict[str, Any]:
    """`client_kwargs` from an `AwsClientParameters` and a region."""
    found: dict[str, Any] = {"region_name": region}
    if parameters is not None:
        bundle = getattr(parameters, "verify_cert_path", None)
        verify = getattr(parameters, "verify", True)
        found["endpoint_url"] = getattr(parameters, "endpoint_url", None)
        found["verify"] = str(bundle) if bundle else (False if verify is False else None)
        found["use_ssl"] = None if getattr(parameters, "use_ssl", True) else False
    return {name: value for name, value in found.items() if value is not None}


def _aws(block: Any) -> dict[str, Any]:
    if getattr(block, "assume_role_arn", None):
        raise InvalidInputError(
            "an AwsCredentials block with assume_role_arn cannot be turned into s3fs options;"
            " give the workers a role (an instance or service-account role) or a block with"
            " keys, or pass storage_options={'profile': ...} naming an AWS profile that"
            " assumes the role"
        )
    options = {
        "key": block.aws_access_key_id,
        "secret": _secret(block.aws_secret_access_key),
        "token": getattr(block, "aws_session_token", None),
        "profile": getattr(block, "profile_name", None),
        "client_kwargs": _aws_client(block.aws_client_parameters, block.region_name) or None,
    }
    return {name: value for name, value in options.items() if value}


def _minio(block: Any) -> dict[str, Any]:
    options = {
        "key": block.minio_root_user,
        "secret": _secret(block.minio_root_password),
        "client_kwargs": _aws_client(block.aws_client_parameters, block.region_name) or None,
    }
    return {name: value for name, value in options.items() if value}


def _gcp(block: Any) -> dict[str, Any]:
    info = _secret(getattr(block, "service_account_info", None))
    path = getattr(block, "service_account_file", None)
    options = {
        "token": dict(info) if info else (str(path) if path else None),  # else: the default
        "project": getattr(block, "project", None),
    }
    return {name: value for name, value in options.items() if value}


def _azure(block: Any) -> dict[str, Any]:
    connection = _secret(getattr(block, "connection_string", None))
    if connection:
        return {"connection_string": connection}
    url = getattr(block, "account_url", None)
    options = {  # without a connection string: Azure's default credential chain (adlfs)
        "account_name": urlparse(url).hostname.split(".")[0] if url else None,
        "client_id": getattr(block, "client_id", None),
        "tenant_id": getattr(block, "tenant_id", None),
        "client_secret": _secret(getattr(block, "client_secret", None)),
        "anon": False,
    }
    return {name: value for name, value in options.items() if value is not None}


def _inner(field: str) -> Callable[[Any], dict[str, Any]]:
    """A bucket block's options: those of its credentials block, in `field`."""
    return lambda block: options_from_block(getattr(block, field))


MAPPINGS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "aws-credentials": _aws,
    "minio-credentials": _minio,
    "s3-bucket": _inner("credentials"),
    "gcp-credentials": _gcp,
    "gcs-bucket": _inner("gcp_credentials"),
    "azure-blob-storage-credentials": _azure,
    "azure-blob-storage-container": _inner("credentials"),
}
"""Block type slug -> the fsspec storage options of a block of that type."""


def slug_of(block: Any) -> str | None:
    """A block's type slug (`aws-credentials`), None for anything that is not a block."""
    getter = getattr(block, "get_block_type_slug", None)
    return str(getter()) if callable(getter) else None


def options_from_block(block: Any) -> dict[str, Any]:
    """The fsspec storage options a credentials (or bucket) block stands for."""
    slug = slug_of(block)
    mapping = MAPPINGS.get(slug or "")
    if mapping is None:
        raise InvalidInputError(
            f"storage_options: a {slug or type(block).__name__} block holds no storage"
            f" credentials; use one of {', '.join(sorted(MAPPINGS))}, or a dict"
        )
    return mapping(block)


def load_block(name: str) -> Block:
    """The saved block `"block-type-slug/name"`, loaded from the Prefect API."""
    slug, _, block_name = name.partition("/")
    if slug not in MAPPINGS or not block_name:
        raise InvalidInputError(
            f"storage_options={name!r}: a saved block is named 'block-type-slug/name', the"
            f" slug one of {', '.join(sorted(MAPPINGS))} ('aws-credentials/etl')"
        )
    try:
        return cast(Block, Block.load(name, _sync=True))  # type: ignore[call-arg]
    except Exception as exc:
        raise InvalidInputError(
            f"storage_options={name!r}: the block cannot be loaded ({type(exc).__name__}:"
            f" {exc}); save it first, with its package installed (prefect-aws, prefect-gcp,"
            " prefect-azure), on the Prefect API this run uses"
        ) from None


def block_options(value: Any) -> Mapping[str, Any] | None:
    """Storage options for a block or a saved block's name; None for anything else (the
    source `plain_options` asks: see `storage.add_options_source`)."""
    if isinstance(value, str):
        return options_from_block(load_block(value))
    if slug_of(value) is not None:
        return options_from_block(value)
    return None


def saved_name(value: Any) -> str | None:
    """`"slug/name"` of a saved block (what a worker can load), None for anything else."""
    slug = slug_of(value)
    name = getattr(value, "_block_document_name", None)
    if slug is None or not name or getattr(value, "_is_anonymous", False):
        return None
    return f"{slug}/{name}"


add_options_source(block_options)
