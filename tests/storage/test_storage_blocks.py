"""Credentials for object storage from a Prefect block: prefect-aws for real, the others mapped.

A real `AwsCredentials` and `S3Bucket` (prefect-aws) pointing at moto's S3 server on
loopback, passed to `extract_records` as the block and as its saved name, with no AWS
variable in the environment; the prefect-gcp and prefect-azure blocks (heavy packages,
not installed for the tests) are mapped from objects with their fields and type slugs.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from model_support import fast_model
from pydantic import SecretStr
from s3_support import KEY_ID, SECRET

from prefect_openai_chat import ChatModel, InvalidInputError
from prefect_openai_chat.blocks.storage_options import block_options, options_from_block
from prefect_openai_chat.examples.tickets import TICKET_PROMPT
from prefect_openai_chat.flows import extract_records
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.storage import masked_options, plain_options

prefect_aws = pytest.importorskip("prefect_aws", reason="pip install prefect-aws")

SCHEMA = "prefect_openai_chat.examples.tickets:SupportTicket"
TICKET = '{"ticket_id": "T1", "subject": "Refund", "body": "Please refund order 1234."}\n'


@pytest.fixture
def no_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials come from the block only."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")  # nor a profile of this machine
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


def aws_credentials(endpoint: str) -> Any:
    from prefect_aws import AwsCredentials
    from prefect_aws.client_parameters import AwsClientParameters

    return AwsCredentials(
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=endpoint),
    )


def night(chat_model: ChatModel, bucket: str, storage_options: Any) -> dict[str, Any]:
    summary: dict[str, Any] = extract_records(
        source=f"s3://{bucket}/in.jsonl", schema=SCHEMA, chat_model=chat_model,
        prompt=TICKET_PROMPT, output=f"s3://{bucket}/out.jsonl",
        quarantine=f"s3://{bucket}/bad.jsonl", key_field="ticket_id", cache=False,
        storage_options=storage_options,
    )  # fmt: skip
    return summary


def test_an_aws_credentials_block_and_its_saved_name_reach_the_bucket(
    chat_model: ChatModel, s3: Any, s3_endpoint: str, bucket: str, no_aws_environment: None
) -> None:
    from prefect_aws import S3Bucket

    s3.pipe_file(f"{bucket}/in.jsonl", TICKET.encode())
    block = aws_credentials(s3_endpoint)
    assert options_from_block(block) == {
        "key": KEY_ID,
        "secret": SECRET,
        "client_kwargs": {"region_name": "us-east-1", "endpoint_url": s3_endpoint},
    }
    assert night(chat_model, bucket, block)["valid"] == 1  # the block itself

    block.save("storage-test-aws", overwrite=True)
    S3Bucket(bucket_name=bucket, credentials=block).save("storage-test-bucket", overwrite=True)
    for name in ("aws-credentials/storage-test-aws", "s3-bucket/storage-test-bucket"):
        s3.rm_file(f"{bucket}/out.jsonl")
        summary = night(chat_model, bucket, name)  # loaded from the Prefect API
        assert summary["valid"] == 1 and s3.exists(f"{bucket}/out.jsonl"), name
    assert SECRET not in str(masked_options(plain_options(block)))
    assert masked_options("aws-credentials/storage-test-aws") == "aws-credentials/storage-test-aws"


def test_a_block_name_that_cannot_be_loaded_says_what_to_do(no_aws_environment: None) -> None:
    with pytest.raises(InvalidInputError, match="block-type-slug/name"):
        plain_options("nightly-etl")
    with pytest.raises(InvalidInputError, match=r"cannot be loaded.*save it first"):
        plain_options("aws-credentials/no-such-block")
    with pytest.raises(InvalidInputError, match="holds no storage credentials"):
        options_from_block(fast_model("http://127.0.0.1:9", "sk-x"))


def test_a_shard_deployment_takes_a_saved_block_s_name_and_refuses_inline_secrets(
    sim: Simulator, s3: Any, s3_endpoint: str, bucket: str, postgres_ledger_url: str,
    no_aws_environment: None,
) -> None:  # fmt: skip
    sim.reset()
    s3.pipe_file(f"{bucket}/in.jsonl", TICKET.encode() + TICKET.replace("T1", "T2").encode())
    fast_model(sim.base_url, sim.api_key).save("storage-blocks-model", overwrite=True)
    block = aws_credentials(s3_endpoint)

    def sharded(storage_options: Any) -> None:
        extract_records(
            source=f"s3://{bucket}/in.jsonl", schema=SCHEMA, chat_model="storage-blocks-model",
            prompt=TICKET_PROMPT, output=f"s3://{bucket}/out.jsonl",
            quarantine=f"s3://{bucket}/bad.jsonl", cache=postgres_ledger_url, shards=2,
            shard_deployment="extract-records-shard/no-such-deployment",
            storage_options=storage_options,
        )  # fmt: skip

    with pytest.raises(InvalidInputError, match="unsaved aws-credentials block") as unsaved:
        sharded(block)
    assert "its name 'aws-credentials/" in str(unsaved.value)
    inline = {"key": KEY_ID, "secret": SECRET, "client_kwargs": {"endpoint_url": s3_endpoint}}
    with pytest.raises(InvalidInputError, match="credentials in storage_options") as refused:
        sharded(inline)
    assert "storage_options='aws-credentials/etl'" in str(refused.value)
    assert SECRET not in str(refused.value)
    block.save("storage-test-shards", overwrite=True)
    for accepted in (block, "aws-credentials/storage-test-shards"):  # past every check
        with pytest.raises(Exception) as missing:
            sharded(accepted)
        assert type(missing.value).__name__ == "ObjectNotFound", repr(missing.value)
    assert sim.stats().requests == 0


def test_gcp_and_azure_blocks_map_to_gcsfs_and_adlfs_options() -> None:
    """prefect-gcp and prefect-azure are not installed for the tests (they pull in the
    Google and Azure SDKs): objects with their blocks' type slugs and fields stand in."""

    def block(slug: str, **fields: Any) -> Any:
        return SimpleNamespace(get_block_type_slug=lambda: slug, **fields)

    info = {"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----x"}
    gcp = block("gcp-credentials", service_account_info=_Secret(info),
                service_account_file=None, project="etl")  # fmt: skip
    assert options_from_block(gcp) == {"token": info, "project": "etl"}
    assert options_from_block(block("gcs-bucket", gcp_credentials=gcp)) == {
        "token": info,
        "project": "etl",
    }
    by_file = block("gcp-credentials", service_account_file="/secrets/sa.json", project=None)
    assert options_from_block(by_file) == {"token": "/secrets/sa.json"}

    connection = "DefaultEndpointsProtocol=https;AccountName=etl;AccountKey=c2VjcmV0"
    azure = block("azure-blob-storage-credentials", connection_string=SecretStr(connection))
    assert options_from_block(azure) == {"connection_string": connection}
    container = block("azure-blob-storage-container", credentials=azure)
    assert block_options(container) == {"connection_string": connection}
    default = block(
        "azure-blob-storage-credentials", connection_string=None,
        account_url="https://etlstore.blob.core.windows.net",
    )  # fmt: skip
    assert options_from_block(default) == {"account_name": "etlstore", "anon": False}
    assert masked_options(plain_options(azure)) == {"connection_string": "***"}


class _Secret:
    """A pydantic `SecretDict` as prefect-gcp's `service_account_info` holds it."""

    def __init__(self, value: dict[str, Any]) -> None:
        self.value = value

    def get_secret_value(self) -> dict[str, Any]:
        return self.value
