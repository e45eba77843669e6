"""The `httpx` library `openai` builds its clients on: `httpx2` in the SDK's newer releases,
`httpx` in the older ones. Its `Response` is what a raw call returns, its SSL and proxy
types are what the credentials blocks build.

Example:
    >>> http_library().__name__ in ("httpx", "httpx2")
    True
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

import openai


@functools.cache
def http_library() -> ModuleType:
    """The module of the `httpx` client class `openai` exports as its default."""
    base = next(c for c in openai.DefaultHttpxClient.__mro__[1:] if c.__name__ == "Client")
    return importlib.import_module(base.__module__.partition(".")[0])
