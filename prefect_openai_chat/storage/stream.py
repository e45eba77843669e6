"""An object on S3 read as one streaming GET, resumed where it stopped.

A source is read front to back, twice a night (once to count, once to run). Read in
ranged GETs of `BLOCK_SIZE`, a 100,000-record source (40 MB) takes 20 requests a
pass; S3 answers each in time proportional to the range, but a server that copies the
whole object for every request (moto's does, docs/benchmarks.md) makes the night's
reading quadratic in the source's size. `ObjectStream` makes one GET per pass and reads
its body as the run consumes it; a connection that breaks (a timeout, a reset, a body
cut short) is opened again at the first byte not yet read, pinned to the object's ETag
so that a source replaced meanwhile fails the read instead of splicing two versions.

Example (needs an S3 API; see tests/storage):
    stream = io.BufferedReader(ObjectStream(fs, "bucket/in.jsonl"), buffer_size=BLOCK_SIZE)
"""

from __future__ import annotations

import asyncio
import io
import time
from contextlib import suppress
from typing import Any

RETRIES = 5
"""Times one read may open the object again after a broken connection, in a row."""


def _retryable() -> tuple[type[BaseException], ...]:
    """What a broken or stalled connection raises while a body is read (s3fs's own list,
    aiohttp's connection errors, and the OS's)."""
    from s3fs.core import S3_RETRYABLE_ERRORS

    found: tuple[type[BaseException], ...] = (*S3_RETRYABLE_ERRORS, OSError, asyncio.TimeoutError)
    try:
        from aiohttp import ClientError
    except ImportError:  # pragma: no cover - s3fs needs aiohttp
        return found
    return (*found, ClientError)


async def _close(body: Any) -> None:
    body.close()


class ObjectStream(io.RawIOBase):
    """A read-only raw file over one S3 object (an s3fs filesystem and a path on it),
    fetched by a single GET; wrap it in `io.BufferedReader` to read lines."""

    def __init__(self, fs: Any, path: str, retries: int = RETRIES) -> None:
        super().__init__()
        bucket, key, version = fs.split_path(path)
        self._fs = fs
        self._request: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version:
            self._request["VersionId"] = version
        self._retries = retries
        self._retry_on = _retryable()
        self._body: Any = None
        self._etag: str | None = None
        self._size: int | None = None
        self._pos = 0
        self.requests = 0  # GETs made so far: one a pass, unless a connection broke

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from fsspec.asyn import sync

        return sync(self._fs.loop, fn, *args, **kwargs)

    def _open(self) -> None:
        """GET the object from the first byte not yet read (the whole object at first)."""
        request = dict(self._request, **self._fs.req_kw)
        if self._pos:
            request["Range"] = f"bytes={self._pos}-"
        if self._etag:
            request["IfMatch"] = self._etag  # the same object as the bytes read so far
        try:
            response = self._call(self._fs._call_s3, "get_object", **request)
        except OSError as exc:  # s3fs's translation of a 412 Precondition Failed
            if self._etag and "pre-condition" in str(exc).lower():
                raise OSError(
                    f"s3://{self._request['Bucket']}/{self._request['Key']} was replaced while"
                    f" it was read (its ETag is no longer {self._etag}): the bytes read so far"
                    " belong to the object before; run again on the new object"
                ) from exc
            raise
        self.requests += 1
        if self._etag is None:
            self._etag = response.get("ETag")
            self._size = response.get("ContentLength")
        self._body = response["Body"]

    def _drop(self) -> None:
        """Close the body's connection, on the client's event loop (aiohttp's objects are
        not thread-safe); a connection already broken, or a loop gone, is fine."""
        body, self._body = self._body, None
        loop = getattr(self._fs, "loop", None)
        if body is not None and loop is not None and loop.is_running():  # not at exit
            with suppress(Exception):
                self._call(_close, body)

    def readinto(self, buffer: Any) -> int:
        """Read up to `len(buffer)` bytes of the body into `buffer`; 0 at the end."""
        view = memoryview(buffer).cast("B")
        if not len(view):
            return 0
        failures = 0
        while True:
            if self._size is not None and self._pos >= self._size:
                self._drop()
                return 0
            if self._body is None:
                self._open()  # s3fs retries the request itself; a refusal is raised
            try:
                data: bytes = self._call(self._body.read, len(view))
                break
            except self._retry_on:
                self._drop()
                failures += 1
                if failures > self._retries:
                    raise
                time.sleep(min(0.1 * 2**failures, 5.0))
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        """Close the connection (one not read to its end is not reused)."""
        if not self.closed:
            self._drop()
        super().close()
