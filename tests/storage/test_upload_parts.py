"""An output is uploaded in parts of a fixed size, never read into memory whole."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect_openai_chat.storage import PART_SIZE, locate

MIB = 2**20


def test_upload_goes_in_parts_of_one_block(
    s3: Any, s3_options: dict[str, Any], bucket: str, tmp_path: Path
) -> None:
    """Two blocks and a bit are a three-part upload (S3's ETag ends `-3`), byte for byte.

    s3fs's `put_file` (used before) read any file under 100 MiB whole and sent it in one
    PUT, so a night's output sat in memory while it was uploaded.
    """
    data = os.urandom(2 * PART_SIZE + MIB)
    local = tmp_path / "rows.jsonl"
    local.write_bytes(data)
    target = locate(f"s3://{bucket}/out/rows.jsonl", s3_options)

    target.upload(local)

    s3.invalidate_cache()
    assert s3.cat_file(f"{bucket}/out/rows.jsonl") == data
    etag = s3.info(f"{bucket}/out/rows.jsonl")["ETag"].strip('"')
    assert etag.endswith("-3"), f"not a multipart upload in parts of PART_SIZE: ETag {etag}"


def test_upload_of_a_small_file_is_one_object(
    s3: Any, s3_options: dict[str, Any], bucket: str, tmp_path: Path
) -> None:
    """A file below one part (and an empty one) still becomes one whole object."""
    for name, data in (("small.jsonl", b'{"id": 1}\n'), ("empty.jsonl", b"")):
        local = tmp_path / name
        local.write_bytes(data)
        locate(f"s3://{bucket}/{name}", s3_options).upload(local)
        s3.invalidate_cache()
        assert s3.cat_file(f"{bucket}/{name}") == data
