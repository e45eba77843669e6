"""URLs of files on object storage: which filesystem, what path, and reading in chunks.

Any fsspec URL works (`s3://`, `gs://`, `az://` or `abfs://`, `memory://`, ...): fsspec
picks the filesystem made for each store (s3fs, gcsfs, adlfs), which finds credentials
the way that store's own tools do (for S3: `AWS_ACCESS_KEY_ID`, `AWS_PROFILE`,
`AWS_ENDPOINT_URL_S3`, an instance role, ...); `storage_options` is passed to it as
keyword arguments. A `file://` URL or a plain path is a local file, read and written by
the local code (flock, rename, fsync), never through here.

Example:
    >>> from prefect_openai_chat.storage import is_url, locate
    >>> is_url("s3://bucket/in.jsonl"), is_url("in.jsonl"), is_url("file:///tmp/in.jsonl")
    (True, False, False)
    >>> target = locate("memory://nightly/in.jsonl")
    >>> target.write_bytes(b'{"id": 1}\\n')
    >>> with target.open_read() as handle:
    ...     handle.readline()
    b'{"id": 1}\\n'
    >>> target.remove()
"""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from prefect_openai_chat.errors import InvalidInputError
from prefect_openai_chat.redaction import MASK, redact_text, remember_secret

BLOCK_SIZE = 2 * 1024 * 1024
"""Bytes a source is read in: the buffer of a read from a store, and on stores other than
S3 the size of one ranged request (S3 is read as one streaming GET: `stream.py`).

Small on purpose: read in 8 MiB chunks, a 100,000-record source raised a process's peak
by 21 MiB more than the same file read locally; in 2 MiB chunks, by 4 MiB more
(docs/benchmarks.md)."""

PART_SIZE = 5 * 1024 * 1024
"""Bytes of one part when a run's output is uploaded: the smallest part S3 takes, so the
upload's buffers stay small whatever the output's size."""

EXTRAS: dict[str, tuple[str, str]] = {
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"),
    "gcs": ("gcsfs", "gcs"),
    "az": ("adlfs", "azure-blob"),
    "abfs": ("adlfs", "azure-blob"),
    "abfss": ("adlfs", "azure-blob"),
    "adl": ("adlfs", "azure-blob"),
}
"""Protocol -> (the package fsspec needs for it, the extra of this plugin that installs it)."""

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+)://")  # two letters at least: not C://
_LOCAL = ("file", "local")
# An option whose name says it holds a credential: masked wherever options are shown.
_CREDENTIAL = re.compile(
    r"key|secret|token|passw|credential|connection_string|sas|signature|auth", re.I
)


def protocol_of(value: str | Path) -> str | None:
    """The protocol of a URL (`s3`, `file`, ...), None for a plain path."""
    if not isinstance(value, str):
        return None
    match = _URL.match(value)
    return match.group(1).lower() if match else None


def is_url(value: object) -> bool:
    """Whether `value` is a URL read and written through fsspec (any protocol but `file`)."""
    protocol = protocol_of(value) if isinstance(value, str) else None
    return protocol is not None and protocol not in _LOCAL


def local_path(value: str | Path) -> Path:
    """A local path, given as a path or a `file://` URL."""
    if protocol_of(value) in _LOCAL:
        return Path(str(value).split("://", 1)[1])
    return Path(value)


# --- storage_options: plain for the filesystem, masked for display ---------------------------


OptionsSource = Callable[[Any], Mapping[str, Any] | None]
_SOURCES: list[OptionsSource] = []


def add_options_source(source: OptionsSource) -> None:
    """Let `plain_options` accept more than a mapping: `source` turns a value it knows (a
    Prefect credentials block, a saved block's name) into storage options, and returns
    None for any other value. `blocks/storage_options.py` adds the Prefect blocks' one,
    so that this package needs no Prefect.
    """
    if source not in _SOURCES:
        _SOURCES.append(source)


def plain_options(options: Any) -> dict[str, Any]:
    """`storage_options` as keyword arguments for the filesystem.

    Accepts None, a dict, a `SecretDict` (any pydantic `Secret`), or what a source added
    with `add_options_source` knows (a credentials block); the values of credential
    options (`key`, `secret`, `token`, `account_key`, ...; every value of a `SecretDict`)
    are remembered by `redaction`, so no message or log shows them.
    """
    if options is None:
        return {}
    secret = hasattr(options, "get_secret_value")
    if not secret and not isinstance(options, Mapping):
        for source in _SOURCES:
            found = source(options)
            if found is not None:
                _remember(found, everything=False)
                return dict(found)
    if secret:
        options = options.get_secret_value()
    if not isinstance(options, Mapping):
        raise InvalidInputError(
            "storage_options must be a dict (or a SecretDict) of keyword arguments for the"
            " filesystem, or a credentials block of prefect-aws, prefect-gcp or prefect-azure"
            f" (or its saved name 'block-type-slug/name'), got {type(options).__name__}"
        )
    _remember(options, everything=secret)
    return dict(options)


def _remember(options: Mapping[Any, Any], everything: bool) -> None:
    for name, value in options.items():
        if isinstance(value, Mapping):
            _remember(value, everything)
        elif isinstance(value, str) and (everything or _CREDENTIAL.search(str(name))):
            remember_secret(value)


def masked_options(options: Any) -> Any:
    """`storage_options` as a flow run's parameters show them: credentials as `***`.

    Example:
        >>> masked_options({"key": "AKIA0123", "client_kwargs": {"endpoint_url": "http://s3"}})
        {'key': '***', 'client_kwargs': {'endpoint_url': 'http://s3'}}
    """
    if options is None or isinstance(options, str):  # a saved block's name is no secret
        return options
    if hasattr(options, "get_secret_value"):
        return _masked(options.get_secret_value(), everything=True)
    if isinstance(options, Mapping):
        return _masked(options, everything=False)
    return MASK


def _masked(options: Mapping[Any, Any], everything: bool) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for name, value in options.items():
        if isinstance(value, Mapping):
            shown[str(name)] = _masked(value, everything)
        elif (
            value is None
            or isinstance(value, bool)
            or not (everything or _CREDENTIAL.search(str(name)))
        ):
            shown[str(name)] = value if isinstance(value, str | int | float | None) else str(value)
        else:
            shown[str(name)] = MASK
    return shown


# --- a file on a store -----------------------------------------------------------------------


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Turn what a store raises (no bucket, no credentials, refused) into an InvalidInputError
    that says `what` failed and why, secrets masked."""
    try:
        yield
    except InvalidInputError:
        raise
    except Exception as exc:
        reason = redact_text(f"{type(exc).__name__}: {exc}")
        raise InvalidInputError(f"{what}: {reason}") from None


def locate(url: str, storage_options: Mapping[str, Any] | None = None) -> Location:
    """The filesystem and path for `url`; InvalidInputError naming the extra to install when
    the store's package is missing, or when the protocol is unknown."""
    from fsspec.core import url_to_fs

    protocol = protocol_of(url) or "file"
    if url[: len(protocol)] != protocol:  # `S3://`: fsspec knows protocols in lower case
        url = protocol + url[len(protocol) :]
    try:
        fs, path = url_to_fs(url, **dict(storage_options or {}))
    except ImportError as exc:
        package, extra = EXTRAS.get(protocol, ("", ""))
        fix = (
            f"pip install 'prefect-openai-chat[{extra}]' (it installs {package})"
            if extra
            else f"install the fsspec filesystem for {protocol}:// ({exc})"
        )
        raise InvalidInputError(f"{url!r}: {protocol}:// URLs need a package: {fix}") from None
    except ValueError as exc:
        raise InvalidInputError(
            f"{url!r}: {redact_text(str(exc))}; use a local path or a URL of a store fsspec"
            " knows (s3://, gs://, az://, abfs://, memory://, ...)"
        ) from None
    except Exception as exc:  # bad storage_options: the filesystem refuses its arguments
        raise InvalidInputError(
            f"{url!r}: the {protocol}:// filesystem refuses storage_options:"
            f" {redact_text(f'{type(exc).__name__}: {exc}')}"
        ) from None
    return Location(fs.unstrip_protocol(path), fs, path)


@dataclass(frozen=True)
class Location:
    """One file (an object) on a store: its URL, its filesystem and its path there.

    What a run needs of a store, and what sharded runs build on: read in chunks, write,
    exists, list beside it, copy, remove. Each is one or a few requests; an object
    written or copied is visible whole or not at all (S3, GCS and Azure Blob PUTs are
    atomic per object).
    """

    url: str  # normalised: `protocol://path`, comparable between two spellings
    fs: Any  # an fsspec `AbstractFileSystem`
    path: str

    def __str__(self) -> str:
        return self.url

    @property
    def name(self) -> str:
        """The last part of the path (`out.parquet`)."""
        return PurePosixPath(self.path).name

    @property
    def suffix(self) -> str:
        """The extension (`.parquet`)."""
        return PurePosixPath(self.path).suffix

    @property
    def folder(self) -> str:
        """The path of the folder (or bucket and prefix) holding it."""
        return str(PurePosixPath(self.path).parent)

    def sibling(self, name: str) -> Location:
        """The object called `name` beside this one."""
        path = str(PurePosixPath(self.path).with_name(name))
        return Location(self.fs.unstrip_protocol(path), self.fs, path)

    def child(self, name: str) -> Location:
        """The object called `name` under this one taken as a folder (a prefix)."""
        path = f"{self.path.rstrip('/')}/{name}"
        return Location(self.fs.unstrip_protocol(path), self.fs, path)

    def open_read(self, block_size: int = BLOCK_SIZE) -> IO[bytes]:
        """A binary file reading the object in chunks of `block_size` (never all at once):
        on S3 one streaming GET (`stream.ObjectStream`), elsewhere one ranged GET a chunk."""
        from fsspec.spec import AbstractBufferedFile

        if _is_s3(self.fs):  # one streaming GET a pass, not one GET per chunk
            from prefect_openai_chat.storage.stream import ObjectStream

            return io.BufferedReader(ObjectStream(self.fs, self.path), buffer_size=block_size)
        handle = self.fs.open(self.path, "rb", block_size=block_size, cache_type="none")
        if isinstance(handle, AbstractBufferedFile):  # its readline re-reads a whole block
            return io.BufferedReader(handle, buffer_size=block_size)
        return handle  # type: ignore[no-any-return]

    def open_write(self) -> IO[bytes]:
        """A binary file whose bytes become the object when it is closed."""
        return self.fs.open(self.path, "wb")  # type: ignore[no-any-return]

    def exists(self) -> bool:
        """Whether the object is there now (the listing cache is not trusted)."""
        self.fs.invalidate_cache(self.folder)
        return bool(self.fs.exists(self.path))

    def is_file(self) -> bool:
        """Whether the object is there and is a file, not a folder or a prefix."""
        self.fs.invalidate_cache(self.folder)
        return bool(self.fs.isfile(self.path))

    def siblings(self, prefix: str) -> list[Location]:
        """The objects beside this one whose name starts with `prefix`."""
        self.fs.invalidate_cache(self.folder)
        try:
            names = self.fs.ls(self.folder, detail=False)
        except FileNotFoundError:
            return []
        found = [PurePosixPath(str(n)).name for n in names]
        return [self.sibling(n) for n in sorted(found) if n.startswith(prefix)]

    def read_bytes(self) -> bytes:
        """The whole object (small objects only: a journal)."""
        return bytes(self.fs.cat_file(self.path))

    def write_bytes(self, data: bytes) -> None:
        """Write the object in one request."""
        self.fs.pipe_file(self.path, data)

    def upload(self, local: Path, block_size: int = PART_SIZE) -> None:
        """Upload a local file as this object, in parts of `block_size` (a multipart upload
        on S3) sent one after another, so memory does not grow with the file.

        On S3, s3fs's own `put_file` with `chunksize=block_size` and one part at a time
        (its default is 50 MiB parts, several at once; a file under two parts is sent in
        one PUT); elsewhere fsspec's writer, fed one MiB at a time.
        """
        if _takes_part_size(self.fs):
            self.fs.put_file(str(local), self.path, chunksize=block_size, max_concurrency=1)
            return
        out = self.fs.open(self.path, "wb", block_size=block_size)
        try:
            with local.open("rb") as source:
                shutil.copyfileobj(source, out, _FEED)
        except BaseException:
            _discard(out)  # closing would publish the parts sent so far as the object
            raise
        out.close()

    def copy_to(self, target: Location) -> None:
        """Copy this object onto `target` (same filesystem), on the store's side."""
        self.fs.copy(self.path, target.path)

    def remove(self) -> None:
        """Remove the object; one already gone is fine."""
        with suppress(FileNotFoundError):
            self.fs.rm_file(self.path)

    def remove_tree(self) -> None:
        """Remove every object under this one taken as a folder (a prefix), and itself."""
        self.fs.invalidate_cache(self.path)
        with suppress(FileNotFoundError):
            self.fs.rm(self.path, recursive=True)
        self.remove()


_FEED = 1 << 20  # bytes handed to a store's writer at once: its buffer holds one part and this


def _is_s3(fs: Any) -> bool:
    """Whether `fs` is s3fs's filesystem (its requests are made through `_call_s3`)."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "s3" in protocols and hasattr(fs, "_call_s3") and hasattr(fs, "split_path")


def _takes_part_size(fs: Any) -> bool:
    """Whether `fs.put_file` takes the part size and the parts sent at once (s3fs)."""
    import inspect

    put = getattr(type(fs), "_put_file", None)
    if put is None or not _is_s3(fs):
        return False
    names = inspect.signature(put).parameters
    return "chunksize" in names and "max_concurrency" in names


def _discard(handle: Any) -> None:
    """Throw away a file being written to a store: nothing becomes the object (an S3
    multipart upload is aborted)."""
    with suppress(Exception):
        handle.discard()
    with suppress(Exception):
        handle.closed = True  # so that nothing closes (and publishes) it later
