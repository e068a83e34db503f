"""Secrets, and the one place that keeps them out of messages and logs.

A recipe refers to a secret (`{ env = "NAME" }` or `{ file = "path" }`); the recipe
loader resolves the reference into a `Secret`, whose value is only handed out by
`Secret.reveal()`. Every revealed value is remembered here, so `redact` can scrub it
from any text (an error message, a log line, a URL) before that text leaves the
process. The CLI installs `RedactingFilter` on its log handlers and redacts every
error it prints.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import (
    parse_qsl,
    quote,
    quote_plus,
    unquote,
    urlencode,
    urlsplit,
    urlunsplit,
)

__all__ = [
    "MASK",
    "RedactingFilter",
    "Secret",
    "forget_secrets",
    "redact",
    "redact_headers",
    "redact_url",
    "remember_secret",
]

MASK: Final = "***"

SENSITIVE_NAMES: Final = (
    "authorization",
    "token",
    "secret",
    "password",
    "passwd",
    "api_key",
    "apikey",
    "api-key",
    "access_key",
    "hapikey",
    "signature",
    "cookie",
    "credential",
    "private-app",
)
"""Header, query and field names whose values are always masked."""

# Short values would turn redaction into noise (masking every "a" in a message);
# a real credential is never this short.
_MIN_SECRET_LENGTH: Final = 4

_lock = threading.Lock()
_known: set[str] = set()
_pattern: re.Pattern[str] | None = None


class Secret:
    """A secret value resolved from a reference; it prints as its reference only.

    Attributes:
        reference: Where the value came from (`env:HUBSPOT_TOKEN`), safe to show.
    """

    __slots__ = ("_value", "reference")

    def __init__(self, value: str, reference: str) -> None:
        self._value = value
        self.reference = reference
        remember_secret(value)

    def reveal(self) -> str:
        """Return the secret's value, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.reference!r})"

    def __str__(self) -> str:
        return f"<secret {self.reference}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def remember_secret(value: str) -> None:
    """Add a value to those `redact` masks."""
    if len(value) < _MIN_SECRET_LENGTH:
        return
    # Sent in a URL or a form, the value shows percent-encoded.
    forms = {value, quote(value, safe=""), quote_plus(value, safe="")}
    global _pattern
    with _lock:
        if forms <= _known:
            return
        _known.update(forms)
        # Longest first, so a secret that contains another is masked whole.
        ordered = sorted(_known, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(known) for known in ordered))


def forget_secrets() -> None:
    """Forget every remembered value (for tests and long-lived embedders)."""
    global _pattern
    with _lock:
        _known.clear()
        _pattern = None


def redact(text: str) -> str:
    """Return `text` with every remembered secret value masked."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def is_sensitive(name: str) -> bool:
    """Return whether a header, query or field name usually holds a credential."""
    lowered = name.lower()
    return any(marker in lowered for marker in SENSITIVE_NAMES)


def redact_url(url: str) -> str:
    """Return the URL with user info, sensitive query values and secrets masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    # Secrets are compared decoded: a client may percent-encode any mix of a
    # value's characters.
    path = parts.path
    decoded = unquote(path)
    if redact(decoded) != decoded:
        path = redact(decoded)
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [
                (key, MASK if is_sensitive(key) else redact(value))
                for key, value in pairs
            ],
            safe="*",
        )
    return redact(urlunsplit((parts.scheme, netloc, path, query, parts.fragment)))


def redact_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
) -> dict[str, str]:
    """Return a copy of the headers with credential-bearing values masked."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {key: MASK if is_sensitive(key) else redact(value) for key, value in items}


class RedactingFilter(logging.Filter):
    """A logging filter that masks remembered secrets in every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(_format_exception(record))
        return True


def _format_exception(record: logging.LogRecord) -> str:
    formatter = logging.Formatter()
    assert record.exc_info is not None
    return formatter.formatException(record.exc_info)


def scrub(value: Any) -> Any:
    """Return a JSON-like value with secrets replaced by their references."""
    if isinstance(value, Secret):
        return str(value)
    if isinstance(value, Mapping):
        return {key: scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value]
    if isinstance(value, str):
        return redact(value)
    return value
