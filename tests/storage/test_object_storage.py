"""Sources and outputs on object storage: one-process nights against a real S3 API (moto's
server on loopback) and `memory://`, the commit through temporary objects and a journal,
a crash between the journal and the copies, and the errors a user can meet."""

from __future__ import annotations

import csv
import io
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import s3fs
from prefect import get_client
from prefect.types import SecretDict
from s3_support import KEY_ID, SECRET

from prefect_openai_chat import ChatModel, ExtractionSpec, InvalidInputError, RunOptions
from prefect_openai_chat.examples.tickets import TICKET_PROMPT, sample_tickets_path
from prefect_openai_chat.flows import extract_records
from prefect_openai_chat.flows.sinks import check_writable, open_outputs, recover_outputs
from prefect_openai_chat.flows.sources import check_source, count_records, read_records
from prefect_openai_chat.simulator import Simulator
from prefect_openai_chat.storage import journal_for, locate, stage_objects

SCHEMA = "prefect_openai_chat.examples.tickets:SupportTicket"


def tickets(n: int) -> list[dict[str, Any]]:
    with sample_tickets_path().open(encoding="utf-8") as handle:
        return [json.loads(line) for line in itertools.islice(handle, n)]


def jsonl(rows: list[Any]) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def night(
    chat_model: ChatModel, source: Any, output: str, quarantine: str, tmp_path: Path, **options: Any
) -> Any:
    return_state = options.pop("return_state", False)
    return extract_records(
        source=source, output=output, quarantine=quarantine,
        spec=ExtractionSpec(schema=SCHEMA, prompt=TICKET_PROMPT, key_field="ticket_id"),
        chat_model=chat_model,
        run=RunOptions(cache=str(tmp_path / "ledger.sqlite"), **options),
        return_state=return_state,
    )  # fmt: skip


def parquet_keys(s3: Any, path: str) -> list[str]:
    with s3.open(path, "rb") as handle:
        return [str(k) for k in pq.read_table(handle).column("_key").to_pylist()]


def jsonl_rows(s3: Any, path: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in s3.cat_file(path).decode().splitlines() if line]


def test_a_night_from_s3_to_s3_writes_every_record_once_and_leaves_no_temporary(
    chat_model: ChatModel,
    sim: Simulator,
    s3: Any,
    s3_options: dict[str, Any],
    bucket: str,
    tmp_path: Path,
) -> None:
    rows = tickets(12)
    s3.pipe_file(f"{bucket}/in.jsonl", jsonl([*rows[:5], "{not json", *rows[5:]]))
    summary = night(
        chat_model, f"s3://{bucket}/in.jsonl", f"s3://{bucket}/out.parquet",
        f"s3://{bucket}/bad.jsonl", tmp_path, storage_options=s3_options,
    )  # fmt: skip
    assert summary["records"] == 13 and summary["output"] == f"s3://{bucket}/out.parquet"
    written = parquet_keys(s3, f"{bucket}/out.parquet")
    bad = jsonl_rows(s3, f"{bucket}/bad.jsonl")
    assert sorted(written + [row["key"] for row in bad]) == sorted(
        [r["ticket_id"] for r in rows] + ["6"]  # the malformed line keeps its line number
    )
    assert len(written) == summary["valid"] and len(bad) == summary["quarantined"] >= 1
    assert sorted(s3.ls(bucket, detail=False)) == [
        f"{bucket}/bad.jsonl", f"{bucket}/in.jsonl", f"{bucket}/out.parquet",
    ]  # fmt: skip
    requests = sim.stats().requests
    again = night(
        chat_model, f"s3://{bucket}/in.jsonl", f"s3://{bucket}/out.parquet",
        f"s3://{bucket}/bad.jsonl", tmp_path, storage_options=s3_options,
    )  # fmt: skip
    assert sim.stats().requests == requests  # a re-run pays nothing
    assert again["valid"] == summary["valid"] and again["from_cache"] == summary["valid"]
    assert sorted(parquet_keys(s3, f"{bucket}/out.parquet")) == sorted(written)


def test_a_csv_night_with_credentials_from_the_environment(
    chat_model: ChatModel,
    s3: Any,
    s3_endpoint: str,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    s3fs.S3FileSystem.clear_instance_cache()  # an s3fs made before keeps its endpoint
    rows = tickets(6)
    text = io.StringIO()
    writer = csv.DictWriter(
        text, fieldnames=["ticket_id", "subject", "body"], extrasaction="ignore"
    )
    writer.writeheader()
    writer.writerows(rows)
    s3.pipe_file(f"{bucket}/in.csv", text.getvalue().encode())
    summary = night(
        chat_model, f"s3://{bucket}/in.csv", f"s3://{bucket}/out.jsonl",
        f"s3://{bucket}/bad.jsonl", tmp_path,
    )  # fmt: skip
    out = jsonl_rows(s3, f"{bucket}/out.jsonl")
    bad = jsonl_rows(s3, f"{bucket}/bad.jsonl")
    assert summary["records"] == 6 == len(out) + len(bad)
    assert sorted([r["_key"] for r in out] + [r["key"] for r in bad]) == sorted(
        r["ticket_id"] for r in rows
    )
    assert sorted(s3.ls(bucket, detail=False)) == [
        f"{bucket}/bad.jsonl", f"{bucket}/in.csv", f"{bucket}/out.jsonl",
    ]  # fmt: skip


def test_a_night_on_memory_urls(chat_model: ChatModel, tmp_path: Path) -> None:
    source = locate("memory://storage-test/in.jsonl")
    source.write_bytes(jsonl(tickets(5)))
    summary = night(
        chat_model, "memory://storage-test/in.jsonl", "memory://storage-test/out.jsonl",
        "memory://storage-test/bad.parquet", tmp_path,
    )  # fmt: skip
    out = [
        json.loads(line)
        for line in locate("memory://storage-test/out.jsonl").read_bytes().splitlines()
    ]
    assert summary["records"] == 5 and len(out) == summary["valid"]
    names = sorted(s.name for s in source.siblings(""))
    assert names == ["bad.parquet", "in.jsonl", "out.jsonl"]
    for name in names:
        source.sibling(name).remove()


def test_the_source_is_streamed_in_chunks_and_counted_by_a_second_streamed_read(
    s3: Any, s3_options: dict[str, Any], bucket: str
) -> None:
    rows = tickets(40)
    s3.pipe_file(f"{bucket}/in.jsonl", jsonl(rows) * 50)  # 2,000 lines, ~1 MB
    location = check_source(f"s3://{bucket}/in.jsonl", s3_options)
    with location.open_read(block_size=64 * 1024) as handle:  # type: ignore[union-attr]
        first = handle.read(10)
        assert handle.raw.requests == 1  # type: ignore[attr-defined]  # one streaming GET
    assert first == jsonl(rows)[:10]
    assert count_records(location) == 2000  # type: ignore[arg-type]
    assert sum(1 for _ in read_records(location)) == 2000  # type: ignore[arg-type]


def _stage(out: Any, bad: Any, tmp_path: Path, run_id: str) -> None:
    """Steps 1-2 of a commit of run `run_id` (temporaries and journal), then a crash."""
    new_out, new_bad = tmp_path / "new-out.jsonl", tmp_path / "new-bad.jsonl"
    new_out.write_text('{"_key": "new"}\n')
    new_bad.write_text('{"key": "new-bad"}\n')
    stage_objects([(new_out, out), (new_bad, bad)], journal_for(out), run_id)


def test_a_crash_between_the_journal_and_the_copies_is_finished_by_the_next_run(
    s3: Any, s3_options: dict[str, Any], bucket: str, tmp_path: Path
) -> None:
    out = check_writable(f"s3://{bucket}/out.jsonl", "output", s3_options)
    bad = check_writable(f"s3://{bucket}/bad.jsonl", "quarantine", s3_options)
    s3.pipe_file(f"{bucket}/out.jsonl", b'{"_key": "last night"}\n')
    s3.pipe_file(f"{bucket}/bad.jsonl", b'{"key": "last night"}\n')
    s3.pipe_file(f"{bucket}/.out.jsonl.tmp-0ld0ld", b"half of a run that died early")
    _stage(out, bad, tmp_path, "deadbeef")
    # the crash: journal and temporaries there, last night's files still whole and readable
    assert s3.cat_file(f"{bucket}/out.jsonl") == b'{"_key": "last night"}\n'
    assert s3.exists(f"{bucket}/.out.jsonl.commit")
    s3.rm_file(f"{bucket}/.out.jsonl.tmp-deadbeef")  # crashed after copying the output
    s3.pipe_file(f"{bucket}/out.jsonl", b'{"_key": "new"}\n')
    done = recover_outputs(out, bad)
    assert s3.cat_file(f"{bucket}/out.jsonl") == b'{"_key": "new"}\n'
    assert s3.cat_file(f"{bucket}/bad.jsonl") == b'{"key": "new-bad"}\n'
    assert done == [
        f"copied s3://{bucket}/.bad.jsonl.tmp-deadbeef to s3://{bucket}/bad.jsonl (a commit interrupted by a crash)",
        f"removed s3://{bucket}/.out.jsonl.tmp-0ld0ld, left by a run that did not finish",
    ]
    assert sorted(s3.ls(bucket, detail=False)) == [f"{bucket}/bad.jsonl", f"{bucket}/out.jsonl"]


def test_a_run_finishes_a_crashed_commit_then_writes_its_own(
    chat_model: ChatModel, s3: Any, s3_options: dict[str, Any], bucket: str, tmp_path: Path
) -> None:
    s3.pipe_file(f"{bucket}/in.jsonl", jsonl(tickets(3)))
    out = check_writable(f"s3://{bucket}/out.jsonl", "output", s3_options)
    bad = check_writable(f"s3://{bucket}/bad.jsonl", "quarantine", s3_options)
    _stage(out, bad, tmp_path, "deadbeef")
    summary = night(
        chat_model, f"s3://{bucket}/in.jsonl", str(out), str(bad), tmp_path,
        storage_options=s3_options,
    )  # fmt: skip
    assert [r["_key"] for r in jsonl_rows(s3, f"{bucket}/out.jsonl")] == [
        r["ticket_id"] for r in tickets(3)
    ][: summary["valid"]]
    assert sorted(s3.ls(bucket, detail=False)) == sorted(
        f"{bucket}/{name}" for name in ("in.jsonl", "out.jsonl", "bad.jsonl")
    )


def test_last_nights_output_stays_readable_while_a_run_writes(
    s3: Any, s3_options: dict[str, Any], bucket: str
) -> None:
    out = check_writable(f"s3://{bucket}/out.jsonl", "output", s3_options)
    bad = check_writable(f"s3://{bucket}/bad.jsonl", "quarantine", s3_options)
    s3.pipe_file(f"{bucket}/out.jsonl", b'{"_key": "last night"}\n')
    with open_outputs(out, bad) as (rows, quarantined):
        rows.write({"_key": "tonight"})
        quarantined.write({"line": 1, "key": "x", "reason": "r", "outcome": "invalid"})
        assert s3.cat_file(f"{bucket}/out.jsonl") == b'{"_key": "last night"}\n'
        assert not s3.exists(f"{bucket}/bad.jsonl")
    assert s3.cat_file(f"{bucket}/out.jsonl") == b'{"_key": "tonight"}\n'
    with pytest.raises(RuntimeError), open_outputs(out, bad) as (rows, _):
        rows.write({"_key": "a failed run"})
        raise RuntimeError("the run fails")
    assert s3.cat_file(f"{bucket}/out.jsonl") == b'{"_key": "tonight"}\n'
    assert sorted(s3.ls(bucket, detail=False)) == [f"{bucket}/bad.jsonl", f"{bucket}/out.jsonl"]


def test_a_missing_bucket_or_object_is_a_clear_error(
    chat_model: ChatModel, s3: Any, s3_options: dict[str, Any], bucket: str, tmp_path: Path
) -> None:
    with pytest.raises(
        InvalidInputError, match=r"source 's3://no-such-bucket-x/in.jsonl' does not exist"
    ):
        check_source("s3://no-such-bucket-x/in.jsonl", s3_options)
    with pytest.raises(
        InvalidInputError, match=rf"source 's3://{bucket}/missing.jsonl' does not exist"
    ):
        check_source(f"s3://{bucket}/missing.jsonl", s3_options)
    with pytest.raises(
        InvalidInputError,
        match=r"output 's3://no-such-bucket-x/out.jsonl' cannot be written: .*bucket does not exist",
    ):
        check_writable("s3://no-such-bucket-x/out.jsonl", "output", s3_options)
    s3.pipe_file(f"{bucket}/in.jsonl", jsonl(tickets(1)))
    with pytest.raises(InvalidInputError, match="cannot be written") as refused:
        night(
            chat_model, f"s3://{bucket}/in.jsonl", "s3://no-such-bucket-x/out.jsonl",
            f"s3://{bucket}/bad.jsonl", tmp_path, storage_options=s3_options,
        )  # fmt: skip
    assert SECRET not in str(refused.value)


@pytest.mark.parametrize(
    ("url", "extra"), [("gs://b/in.jsonl", "gcs"), ("az://c/in.jsonl", "azure-blob")]
)
def test_a_url_whose_package_is_missing_names_the_extra(
    url: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "adlfs", None)
    imported = sys.modules["fsspec.registry"]._registry  # filesystem classes imported so far
    for protocol in ("gs", "gcs", "az", "abfs"):
        monkeypatch.delitem(imported, protocol, raising=False)
    with pytest.raises(InvalidInputError, match=rf"pip install 'prefect-openai-chat\[{extra}\]'"):
        check_source(url)


def test_collisions_refused_between_urls(
    chat_model: ChatModel, s3: Any, s3_options: dict[str, Any], bucket: str, tmp_path: Path
) -> None:
    s3.pipe_file(f"{bucket}/in.jsonl", jsonl(tickets(1)))
    source = f"s3://{bucket}/in.jsonl"
    with pytest.raises(InvalidInputError, match="output and quarantine must be different files"):
        night(
            chat_model,
            source,
            f"s3://{bucket}/o.jsonl",
            f"S3://{bucket}/o.jsonl",  # one object, however the protocol is spelled
            tmp_path,
            storage_options=s3_options,
        )
    with pytest.raises(InvalidInputError, match="source and output must be different files"):
        night(
            chat_model,
            source,
            source,
            f"s3://{bucket}/bad.jsonl",
            tmp_path,
            storage_options=s3_options,
        )
    with pytest.raises(InvalidInputError, match="both on local paths or both on object storage"):
        night(
            chat_model,
            source,
            f"s3://{bucket}/o.jsonl",
            str(tmp_path / "bad.jsonl"),
            tmp_path,
            storage_options=s3_options,
        )
    with pytest.raises(InvalidInputError, match="both on local paths or both on object storage"):
        night(  # a sharded run too (tests/storage/test_sharded_object_storage.py runs them)
            chat_model,
            source,
            f"s3://{bucket}/o.jsonl",
            str(tmp_path / "bad.jsonl"),
            tmp_path,
            shards=2,
            storage_options=s3_options,
        )
    assert sorted(s3.ls(bucket, detail=False)) == [f"{bucket}/in.jsonl"]  # no probe left


@pytest.mark.parametrize("secret_dict", [False, True])
def test_storage_options_credentials_are_masked_in_the_flow_runs_parameters(
    secret_dict: bool,
    chat_model: ChatModel,
    s3: Any,
    s3_options: dict[str, Any],
    bucket: str,
    tmp_path: Path,
) -> None:
    s3.pipe_file(f"{bucket}/in.jsonl", jsonl(tickets(2)))
    options: Any = SecretDict(s3_options) if secret_dict else s3_options
    state = night(
        chat_model, f"s3://{bucket}/in.jsonl", f"s3://{bucket}/out.jsonl",
        f"s3://{bucket}/bad.jsonl", tmp_path, storage_options=options, return_state=True,
    )  # fmt: skip
    assert state.result()["records"] == 2
    with get_client(sync_client=True) as client:
        parameters = client.read_flow_run(state.state_details.flow_run_id).parameters
    shown = parameters["run"]["storage_options"]
    assert shown["key"] == shown["secret"] == "***"
    endpoint = shown["client_kwargs"]["endpoint_url"]
    assert endpoint == ("***" if secret_dict else s3_options["client_kwargs"]["endpoint_url"])
    assert KEY_ID not in json.dumps(parameters) and SECRET not in json.dumps(parameters)


KILLED_MID_COMMIT = """
import json, os, sys
from prefect_openai_chat.flows.sinks import check_writable, open_outputs
from prefect_openai_chat.storage import Location

options, bucket = json.loads(sys.argv[1]), sys.argv[2]
out = check_writable(f"s3://{bucket}/out.jsonl", "output", options)
bad = check_writable(f"s3://{bucket}/bad.jsonl", "quarantine", options)
copy = Location.copy_to

def copy_then_die(self, target):
    copy(self, target)
    os._exit(9)  # the process dies right after the first copy

Location.copy_to = copy_then_die
with open_outputs(out, bad) as (rows, quarantined):
    rows.write({"_key": "tonight"})
    quarantined.write({"line": 2, "key": "q", "reason": "r", "outcome": "invalid"})
"""


def test_a_process_killed_between_two_copies_leaves_whole_objects_and_the_next_run_finishes(
    s3: Any, s3_options: dict[str, Any], bucket: str
) -> None:
    s3.pipe_file(f"{bucket}/out.jsonl", b'{"_key": "last night"}\n')
    s3.pipe_file(f"{bucket}/bad.jsonl", b'{"key": "last night"}\n')
    died = subprocess.run(
        [sys.executable, "-c", KILLED_MID_COMMIT, json.dumps(s3_options), bucket],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert died.returncode == 9, died.stderr.decode()[-2000:]
    # what a reader sees now: the new output with last night's quarantine, each whole
    assert s3.cat_file(f"{bucket}/out.jsonl") == b'{"_key": "tonight"}\n'
    assert s3.cat_file(f"{bucket}/bad.jsonl") == b'{"key": "last night"}\n'
    assert s3.exists(f"{bucket}/.out.jsonl.commit")
    out = check_writable(f"s3://{bucket}/out.jsonl", "output", s3_options)
    bad = check_writable(f"s3://{bucket}/bad.jsonl", "quarantine", s3_options)
    done = recover_outputs(out, bad)  # the output's copy again (its temporary was still
    assert [line.split(" to ")[1] for line in done] == [  # there), then the quarantine's
        f"s3://{bucket}/out.jsonl (a commit interrupted by a crash)",
        f"s3://{bucket}/bad.jsonl (a commit interrupted by a crash)",
    ]
    assert s3.cat_file(f"{bucket}/out.jsonl") == b'{"_key": "tonight"}\n'
    assert json.loads(s3.cat_file(f"{bucket}/bad.jsonl"))["key"] == "q"
    assert sorted(s3.ls(bucket, detail=False)) == [f"{bucket}/bad.jsonl", f"{bucket}/out.jsonl"]
