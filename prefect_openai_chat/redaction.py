"""Keep API keys out of every exception, log line and event the plugin produces.

A server or proxy may echo the key it was sent (in an error message, in a body). The
plugin redacts, at its boundary, every string it hands on: the exception the runner
raises (its message, `args`, `message`, `body`, notes, the request's auth headers and
the whole cause chain), the lines it logs and the payloads of its events. What is
redacted: every key the plugin has built a client with (`remember_secret`), and
anything that looks like an OpenAI key (`sk-...`) or a bearer token, and the credential
values of a credentials block's `default_headers` (`remember_headers`).

Text the plugin keeps (a quarantine row, the record ledger, an artifact, an event) also
passes `bounded_text`: redacted, lone surrogates escaped (`surrogates`: a model may write
half an emoji, which no UTF-8 file holds), then cut to a size limit with a marker saying
how much was cut (`cap_text`), so that neither a key nor a 2 MB answer lands there.

Example:
    >>> from prefect_openai_chat.redaction import bounded_text, redact_text, remember_secret
    >>> _ = remember_secret("azure-key-0123456789")
    >>> redact_text("bad key azure-key-0123456789, also sk-proj-abcdefgh12345678")
    'bad key ***, also ***'
    >>> bounded_text("refused: azure-key-0123456789 " + "x" * 20, limit=16)
    'refused: *** xxx\\n[prefect-openai-chat: 17 more bytes cut; the text had 33 bytes]'
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from prefect_openai_chat.surrogates import escape_surrogates

S = TypeVar("S", bound="str | None")

MASK = "***"
MIN_SECRET_LENGTH = 8  # shorter values would mask ordinary words
_SHAPES = re.compile(
    r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-*]{6,}|(?i:bearer)\s+[A-Za-z0-9._\-~+/]{6,}=*"
)
_AUTH_HEADERS = ("authorization", "api-key", "x-api-key", "openai-api-key")
# A header whose name says it carries a credential, or whose value does (an auth scheme, or
# a long token of letters and digits): its value is redacted. Every value is stored masked.
_CREDENTIAL_NAME = re.compile(
    r"auth|key|token|secret|cookie|passw|session|signature|credential", re.I
)
_CREDENTIAL_VALUE = re.compile(
    r"^(?:(?i:bearer|basic|token|digest|apikey)\s+\S+"
    r"|(?=\S*[A-Za-z])(?=\S*[0-9])[A-Za-z0-9._~+/=\-]{16,})$"
)

_MARKER = re.compile(
    r"\n\[prefect-openai-chat: \d+ more bytes cut; [^\]\n]{1,40} had \d+ bytes\]\Z"
)

SECRETS_KEPT = 256  # the secrets redacted at once; the least recently used one goes first
_lock = threading.Lock()
_secrets: dict[str, None] = {}  # in the order last remembered: the oldest first
_pattern: re.Pattern[str] | None = None


def remember_secret(secret: S) -> S:
    """Redact `secret` from now on (shorter than 8 characters: ignored); returns it.

    A key is remembered each time it is read for a call, so the `SECRETS_KEPT` kept are the
    ones in use: a process that rotates through more keys forgets the longest unused.
    """
    global _pattern
    if secret is None or len(secret) < MIN_SECRET_LENGTH:
        return secret
    text = str(secret)
    with _lock:
        known = text in _secrets
        _secrets.pop(text, None)
        _secrets[text] = None
        if known:
            return secret
        while len(_secrets) > SECRETS_KEPT:
            del _secrets[next(iter(_secrets))]
        longest_first = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in longest_first))
    return secret


def remember_headers(headers: Mapping[str, str] | None) -> None:
    """Redact from now on the values of `headers` that carry a credential (and the token
    after an auth scheme such as `Bearer`); fault switches such as `x-simulator-fault:
    fenced-json` are left readable."""
    for name, value in (headers or {}).items():
        text = str(value).strip()
        if _CREDENTIAL_NAME.search(str(name)) or _CREDENTIAL_VALUE.match(text):
            remember_secret(text)
            remember_secret(text.split()[-1] if text.split() else text)


def redact_text(text: str, extra: Iterable[str] = ()) -> str:
    """`text` with every known secret, `sk-...` key and bearer token replaced by `***`."""
    for secret in extra:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, MASK)
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return _SHAPES.sub(MASK, text)


def cap_text(text: S, limit: int, what: str = "the text") -> S:
    """`text` cut to `limit` bytes of UTF-8, with a marker saying how much was cut.

    Example:
        >>> cap_text("x" * 10, limit=4, what="the reason")
        'xxxx\\n[prefect-openai-chat: 6 more bytes cut; the reason had 10 bytes]'
    """
    if text is None or len(text) * 4 <= limit:  # at most 4 bytes a character: short enough
        return text
    data = text.encode("utf-8", errors="surrogatepass")
    if len(data) <= limit:
        return text
    marked = _MARKER.search(text[-200:])  # capped before (a stored outcome read back): as is
    if marked and len(data) - len(marked.group().encode()) <= limit:
        return text
    kept = data[:limit].decode("utf-8", errors="ignore")  # never half a character
    cut = len(data) - len(kept.encode("utf-8", errors="surrogatepass"))
    marker = f"[prefect-openai-chat: {cut} more bytes cut; {what} had {len(data)} bytes]"
    return f"{kept}\n{marker}"  # type: ignore[return-value]


def bounded_text(text: S, limit: int, what: str = "the text") -> S:
    """`text` redacted, its lone surrogates escaped, then capped to `limit` bytes
    (`cap_text`): what the plugin keeps."""
    if text is None:
        return text
    return cap_text(escape_surrogates(redact_text(text)), limit, what)  # type: ignore[return-value]


def redact_value(value: Any) -> Any:
    """A copy of a JSON-like value (str, list, tuple, dict) with its strings redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact_value(v) for v in value)
    return value


def redact_exception(exc: BaseException) -> BaseException:
    """Redact `exc` in place, with its notes and its whole cause/context chain; returns it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        _redact_one(current)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return exc


def _redact_one(exc: BaseException) -> None:
    with contextlib.suppress(Exception):  # an exception type with a read-only args: leave it
        exc.args = tuple(redact_value(a) for a in exc.args)
    for name in ("message", "body", "last_error"):
        value = getattr(exc, name, None)
        if value is not None:
            with contextlib.suppress(Exception):
                setattr(exc, name, redact_value(value))
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        notes[:] = [redact_text(n) if isinstance(n, str) else n for n in notes]
    response = getattr(exc, "response", None)
    for holder in (getattr(exc, "request", None), getattr(response, "request", None)):
        _redact_headers(getattr(holder, "headers", None))
    if response is not None:
        _redact_body(response)


def _redact_body(response: Any) -> None:
    """The raw body an `httpx` response keeps (and pickles): bytes and decoded text."""
    content = getattr(response, "_content", None)
    if isinstance(content, bytes):
        with contextlib.suppress(Exception):
            response._content = redact_text(content.decode("utf-8", "replace")).encode()
    text = getattr(response, "_text", None)
    if isinstance(text, str):
        with contextlib.suppress(Exception):
            response._text = redact_text(text)


def _redact_headers(headers: Any) -> None:
    if headers is None:
        return
    for name in _AUTH_HEADERS:
        try:
            if name in headers:
                headers[name] = MASK
        except Exception:  # immutable headers: nothing to do
            return
