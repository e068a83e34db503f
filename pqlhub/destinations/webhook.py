"""The webhook: each enter and exit POSTed as JSON, one by one or in batches.

One event is a JSON object; with `batch_size` above 1 a request carries
`{"events": [...]}`. Workflow tools' catch hooks (Zapier, n8n, Make) take either.
Every event has a stable `id`, the same when a batch is sent again after a crash, so
a receiver can drop duplicates. With a `secret`, each request is signed: the
`X-Pqlhub-Signature` header holds `sha256=` and the hex HMAC-SHA256, under the
secret, of the `X-Pqlhub-Timestamp` header's value, a dot, and the raw body;
`verify_signature` checks one.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

import httpx
import orjson

from pqlhub.connectors import (
    Action,
    Batch,
    Change,
    CheckResult,
    Destination,
    DestinationContext,
    FailureKind,
    Limits,
    Outcome,
)
from pqlhub.destinations.events import change_event
from pqlhub.errors import FatalSyncError, RetriableSyncError, SkippableSyncError
from pqlhub.redaction import Secret, redact

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Webhook",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER: Final = "X-Pqlhub-Signature"
TIMESTAMP_HEADER: Final = "X-Pqlhub-Timestamp"
_SECRET: Final = {"$ref": "https://pqlhub.dev/schemas/defs.schema.json#/$defs/secret"}


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Return the signature header value for a request body."""
    message = timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """Check a webhook request's signature, as a receiver would.

    Args:
        secret: The shared secret.
        body: The raw request body.
        timestamp: The `X-Pqlhub-Timestamp` header.
        signature: The `X-Pqlhub-Signature` header.
        tolerance: The oldest request accepted, in seconds (replay protection).
        now: The current Unix time (for tests).
    """
    try:
        age = (now if now is not None else time.time()) - float(timestamp)
    except ValueError:
        return False
    if abs(age) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class Webhook(Destination):
    """POSTs segment enter, exit and update events to a URL."""

    name = "webhook"
    config_schema: ClassVar[Mapping[str, Any]] = {
        "type": "object",
        "properties": {
            "url": {
                "description": "Where to POST. Catch-hook URLs are secrets of their "
                'own: prefer { env = "NAME" }.',
                "oneOf": [{"type": "string", "pattern": "^https?://"}, _SECRET],
            },
            "secret": {**_SECRET, "description": "Signs each request (HMAC-SHA256)."},
            "headers": {
                "type": "object",
                "additionalProperties": {"oneOf": [{"type": "string"}, _SECRET]},
                "description": "Extra headers, such as an Authorization header.",
            },
            "batch_size": {
                "type": "integer",
                "minimum": 1,
                "maximum": 1000,
                "default": 1,
                "description": "Events per request; 1 sends each on its own.",
            },
            "timeout": {"type": "number", "exclusiveMinimum": 0, "default": 10},
        },
        "required": ["url"],
        "additionalProperties": False,
    }
    actions: ClassVar[Mapping[str, Action]] = {
        "send": Action("send", "POST the enter, exit or update event as JSON."),
    }
    limits: ClassVar[Limits] = Limits(batch_size=1000, concurrency=4)

    def __init__(self, config: Mapping[str, Any], context: DestinationContext) -> None:
        super().__init__(config, context)
        self.url = _text(config["url"])
        self.secret = _text(config["secret"]) if "secret" in config else None
        self.events_per_request = int(config.get("batch_size", 1))
        # One sync batch is one request: `concurrency` requests then run at once,
        # and a crash resends at most the requests in flight. Limits are declared
        # per class, but this batch size is the recipe block's.
        headers = {
            name: _text(value) for name, value in config.get("headers", {}).items()
        }
        self.client = context.http(
            headers={"Content-Type": "application/json", **headers},
            timeout=float(config.get("timeout", 10)),
            fatal_hint=f"the URL and headers of destination {context.name!r}",
        )

    def apply(self, batch: Batch) -> Sequence[Outcome]:
        """Send the batch's events, in requests of `batch_size` events."""
        outcomes: list[Outcome] = []
        size = self.events_per_request
        for start in range(0, len(batch.changes), size):
            chunk = batch.changes[start : start + size]
            try:
                outcomes.extend(self._send(batch.sync, chunk, single=size == 1))
            except RetriableSyncError as exc:
                # The requests before this one were delivered; only this one's
                # events wait for the next run.
                outcomes.extend(Outcome.retry(change, str(exc)) for change in chunk)
        return outcomes

    def _send(
        self, sync: str, changes: Sequence[Change], single: bool
    ) -> list[Outcome]:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        events = [change_event(sync, change, sent_at=stamp) for change in changes]
        body = orjson.dumps(events[0] if single else {"events": events}, default=str)
        response = self.client.request(
            "POST",
            self.url,
            content=body,
            headers=self._headers(body, changes, single),
            fatal=(401, 403, 404, 410),
        )
        if response.is_success:
            return [Outcome.done(change) for change in changes]
        reason = _reason(response)
        if len(changes) > 1 and response.status_code in (400, 413, 422):
            raise SkippableSyncError(reason)
        if 400 <= response.status_code < 500:
            return [Outcome.failed(c, FailureKind.DATA, reason) for c in changes]
        msg = f"Webhook {self.context.name!r} answered HTTP {response.status_code}."
        raise FatalSyncError(msg)

    def _headers(
        self, body: bytes, changes: Sequence[Change], single: bool
    ) -> dict[str, str]:
        headers: dict[str, str] = {}
        if single:
            headers["X-Pqlhub-Event-Id"] = changes[0].id
            headers["Idempotency-Key"] = changes[0].id
        else:
            joined = "".join(change.id for change in changes)
            headers["Idempotency-Key"] = hashlib.sha256(joined.encode()).hexdigest()[
                :32
            ]
        if self.secret is not None:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self.secret, timestamp, body)
        return headers

    def batch_size(self, action: str) -> int:
        """One batch is one request: `batch_size` events."""
        return self.events_per_request

    def check(self) -> list[CheckResult]:
        """Report the URL in use; a webhook cannot be checked without sending."""
        return [
            CheckResult(
                "url",
                True,
                "The URL is set; a webhook cannot be checked without sending an "
                "event, so run 'pqlhub run --dry-run' to see what would be sent.",
            )
        ]

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()


def _text(value: Any) -> str:
    return value.reveal() if isinstance(value, Secret) else str(value)


def _reason(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")[:300]
    detail = f": {redact(text)}" if text else ""
    return f"The webhook answered HTTP {response.status_code}{detail}."
