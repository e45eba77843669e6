"""Shards without a shared disk: sharded nights whose source, parts and outputs are objects.

A real S3 API on loopback (moto's server), the simulator over HTTP, real Prefect flows:
the shards as tasks in threads, then in the processes of a Dask cluster (which reach the
store only through the URL and `storage_options`), a shard whose part commit fails and
is run again, and the work pool's checks for what other hosts can reach.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from dask_support import DaskCluster
from model_support import fast_model
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from s3_support import KEY_ID, SECRET

from prefect_openai_chat import ChatModel, ExtractionSpec, InvalidInputError, RunOptions
from prefect_openai_chat.examples.tickets import TICKET_PROMPT, sample_tickets_path
from prefect_openai_chat.flows import extract_records
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.storage import Location

SCHEMA = "prefect_openai_chat.examples.tickets:SupportTicket"
RECORDS = 24


def put_records(s3: Any, bucket: str, count: int = RECORDS) -> list[str]:
    """`count` unique tickets as `in.jsonl` in the bucket (the shipped sample, cycled)."""
    with sample_tickets_path().open(encoding="utf-8") as handle:
        samples = [json.loads(line) for line in handle if line.strip()]
    lines = []
    for n in range(1, count + 1):
        ticket = dict(samples[(n - 1) % len(samples)])
        ticket["ticket_id"] = f"T{n:05d}"
        ticket["subject"] = f"[R{n:05d}] {ticket.get('subject') or ''}"
        lines.append(json.dumps(ticket) + "\n")
    s3.pipe_file(f"{bucket}/in.jsonl", "".join(lines).encode())
    return [f"T{n:05d}" for n in range(1, count + 1)]


def sharded(
    flow: Any, chat_model: Any, bucket: str, cache: str, output: str = "out.parquet", **options: Any
) -> dict[str, Any]:
    summary: dict[str, Any] = flow(
        source=f"s3://{bucket}/in.jsonl", output=f"s3://{bucket}/{output}",
        quarantine=f"s3://{bucket}/bad.jsonl",
        spec=ExtractionSpec(schema=SCHEMA, prompt=TICKET_PROMPT, key_field="ticket_id"),
        chat_model=chat_model,
        run=RunOptions(chunk_size=5, concurrency=4, cache=cache, **options),
    )  # fmt: skip
    return summary


def objects(s3: Any, bucket: str) -> list[str]:
    """Every object in the bucket, hidden prefixes included."""
    s3.invalidate_cache()
    return sorted(path.removeprefix(f"{bucket}/") for path in s3.find(bucket))


def output_keys(s3: Any, bucket: str, name: str = "out.parquet") -> list[str]:
    if name.endswith(".parquet"):
        with s3.open(f"{bucket}/{name}", "rb") as handle:
            return [str(k) for k in pq.read_table(handle).column("_key").to_pylist()]
    text = s3.cat_file(f"{bucket}/{name}").decode()
    return [json.loads(line)["_key"] for line in text.splitlines() if line]


def quarantined(s3: Any, bucket: str) -> list[str]:
    text = s3.cat_file(f"{bucket}/bad.jsonl").decode()
    return [json.loads(line)["key"] for line in text.splitlines() if line]


def test_a_sharded_night_from_s3_to_s3_ends_every_record_once_and_leaves_no_part(
    chat_model: ChatModel,
    sim: Simulator,
    s3: Any,
    s3_options: dict[str, Any],
    bucket: str,
    postgres_ledger_url: str,
) -> None:
    keys = put_records(s3, bucket)
    # a parent run that died before its merge left its parts: the next run removes them
    s3.pipe_file(f"{bucket}/.out.parquet.parts-crashed/part-0001.jsonl", b'{"_key": "T1"}\n')
    summary = sharded(
        extract_records, chat_model, bucket, postgres_ledger_url, shards=3,
        storage_options=s3_options,
    )  # fmt: skip
    assert (summary["records"], summary["valid"], summary["shards"]) == (RECORDS, RECORDS, 3)
    assert output_keys(s3, bucket) == keys  # every record once, in input order
    assert quarantined(s3, bucket) == []
    assert objects(s3, bucket) == ["bad.jsonl", "in.jsonl", "out.parquet"]
    assert sim.stats().requests == RECORDS  # each record paid once
    with get_client(sync_client=True) as client:
        shard_runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_="shard "))
        )
    mine = [r for r in shard_runs if bucket in str(r.parameters.get("output"))]
    assert len(mine) == 3 and all(
        r.parameters["output"].startswith(f"s3://{bucket}/.out.parquet.parts-") for r in mine
    )
    for flow_run in mine:  # each shard got the options; its run's page masks the credentials
        shown = flow_run.parameters["run"]["storage_options"]
        assert shown["key"] == shown["secret"] == "***", shown
        assert shown["client_kwargs"] == s3_options["client_kwargs"]

    again = sharded(
        extract_records, chat_model, bucket, postgres_ledger_url, shards=3,
        storage_options=s3_options,
    )  # fmt: skip
    assert sim.stats().requests == RECORDS  # a re-run pays nothing
    assert again["from_cache"] == RECORDS and output_keys(s3, bucket) == keys
    assert objects(s3, bucket) == ["bad.jsonl", "in.jsonl", "out.parquet"]


def test_a_shard_whose_part_commit_fails_is_run_again_exactly_once_without_leftovers(
    chat_model: ChatModel,
    sim: Simulator,
    s3: Any,
    s3_options: dict[str, Any],
    bucket: str,
    postgres_ledger_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = put_records(s3, bucket)
    copy_to = Location.copy_to
    failed: list[str] = []
    seen: dict[str, list[str]] = {}

    def copy_failing_once(self: Location, target: Location) -> None:
        """The store goes away while shard 2's output part is copied into place: after
        the commit's journal, so its temporaries and journal are left behind."""
        if target.name == "part-0002.jsonl" and not failed:
            seen["left"] = objects(s3, bucket)
            failed.append(target.url)
            raise ConnectionError("the store went away while copying shard 2's part")
        copy_to(self, target)

    monkeypatch.setattr(Location, "copy_to", copy_failing_once)
    summary = sharded(
        extract_records, chat_model, bucket, postgres_ledger_url, output="out.jsonl",
        shards=3, storage_options=s3_options,
    )  # fmt: skip
    assert failed, "the fault was not hit"
    left = [name for name in seen["left"] if "part-0002" in name]
    assert any(name.endswith(".part-0002.jsonl.commit") for name in left), left
    assert summary["records"] == RECORDS == summary["valid"]
    assert output_keys(s3, bucket, "out.jsonl") == keys  # shard 2's part overwritten, once
    assert sim.stats().requests == RECORDS  # the re-run shard paid nothing again
    assert summary["from_cache"] == RECORDS // 3  # shard 2's, read back from the ledger
    assert objects(s3, bucket) == ["bad.jsonl", "in.jsonl", "out.jsonl"]


@pytest.mark.slow
def test_shards_in_dask_processes_reach_the_store_through_storage_options(
    chat_model: ChatModel,
    sim: Simulator,
    s3: Any,
    s3_options: dict[str, Any],
    bucket: str,
    postgres_ledger_url: str,
    dask_cluster: DaskCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect_dask.task_runners import DaskTaskRunner

    # The session's cluster: two worker processes started without AWS_* variables, so they
    # (and this process) reach the store through storage_options alone.
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    keys = put_records(s3, bucket)
    runner = DaskTaskRunner(address=dask_cluster.address)
    summary = sharded(
        extract_records.with_options(task_runner=runner), chat_model, bucket,
        postgres_ledger_url, output="out.jsonl", shards=2, storage_options=s3_options,
    )  # fmt: skip
    pids = dask_cluster.worker_pids
    assert os.getpid() not in pids and len(pids) == 2
    assert (summary["records"], summary["valid"], summary["shards"]) == (RECORDS, RECORDS, 2)
    assert output_keys(s3, bucket, "out.jsonl") == keys
    assert sim.stats().requests == RECORDS
    assert objects(s3, bucket) == ["bad.jsonl", "in.jsonl", "out.jsonl"]


def test_a_shard_deployment_takes_urls_as_what_every_worker_reaches(
    sim: Simulator,
    s3: Any,
    s3_endpoint: str,
    bucket: str,
    postgres_ledger_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim.reset()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)  # as the workers would find them
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    put_records(s3, bucket, 6)
    fast_model(sim.base_url, sim.api_key).save("sharded-storage-model", overwrite=True)
    endpoint = {"client_kwargs": {"endpoint_url": s3_endpoint}}
    with pytest.raises(Exception) as raised:  # past the checks: the deployment is missing
        sharded(
            extract_records, "sharded-storage-model", bucket, postgres_ledger_url, shards=2,
            shard_deployment="extract-records-shard/no-such-deployment",
            storage_options=endpoint,
        )  # fmt: skip
    assert type(raised.value).__name__ == "ObjectNotFound", repr(raised.value)
    with pytest.raises(InvalidInputError, match="credentials in storage_options") as refused:
        sharded(
            extract_records, "sharded-storage-model", bucket, postgres_ledger_url, shards=2,
            shard_deployment="extract-records-shard/no-such-deployment",
            storage_options={**endpoint, "key": KEY_ID, "secret": SECRET},
        )  # fmt: skip
    assert SECRET not in str(refused.value)
    assert sim.stats().requests == 0
    assert objects(s3, bucket) == ["in.jsonl"]


def test_memory_urls_with_a_shard_deployment_are_refused_as_local(
    sim: Simulator, tmp_path: Path, postgres_ledger_url: str
) -> None:
    sim.reset()
    with pytest.raises(InvalidInputError, match="output 'memory://") as refused:
        extract_records(
            source=str(sample_tickets_path()),
            output="memory://sharded/out.jsonl", quarantine="memory://sharded/bad.jsonl",
            spec=ExtractionSpec(schema=SCHEMA, prompt=TICKET_PROMPT),
            chat_model=fast_model(sim.base_url, sim.api_key),
            run=RunOptions(
                cache=postgres_ledger_url, shards=2,
                shard_deployment="extract-records-shard/no-such-deployment",
            ),
        )  # fmt: skip
    assert "source" in str(refused.value) and sim.stats().requests == 0
