"""A webhook receiver on loopback: what a workflow tool's catch hook would be.

It records every event it accepts, keeps who is in which segment according to the
events, drops events it has seen before (by their stable `id`), checks signatures
when it knows the secret, and can be told to misbehave: answer 429 with
`Retry-After`, 500, 401, reject chosen contacts with 400, or answer slowly. Run it
in a test, or on its own with `python -m pqlhub.testing.receiver --port N`.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pqlhub.destinations.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)

__all__ = ["Fault", "WebhookReceiver"]


@dataclass
class Fault:
    """One canned answer for the next request.

    Attributes:
        status: The HTTP status to answer.
        retry_after: The `Retry-After` header, in seconds, if any.
        delay: Seconds to wait before answering (0 for none).
        body: The answer's body.
    """

    status: int
    retry_after: float | None = None
    delay: float = 0.0
    body: str = '{"error": "injected fault"}'


@dataclass
class _State:
    events: list[dict[str, Any]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    duplicates: int = 0
    requests: int = 0
    members: set[tuple[str, str]] = field(default_factory=set)
    faults: deque[Fault] = field(default_factory=deque)
    rejected: set[str] = field(default_factory=set)
    expired: bool = False
    delay: float = 0.0
    bad_signatures: int = 0


class WebhookReceiver:
    """A catch-hook server on 127.0.0.1.

    Args:
        secret: The signing secret; when set, unsigned or wrongly signed requests
            get 401 and are not recorded.
        token: When set, requests must carry `Authorization: Bearer <token>`.
    """

    def __init__(self, secret: str | None = None, token: str | None = None) -> None:
        self.secret = secret
        self.token = token
        self._state = _State()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------- lifecycle

    def start(self, port: int = 0) -> str:
        """Start serving; return the URL to POST to."""
        receiver = self

        class Handler(_Handler):
            owner = receiver

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        # A short poll interval lets stop() return at once rather than in 0.5 s.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        """The URL events are POSTed to."""
        assert self._server is not None, "start() the receiver first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> WebhookReceiver:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- faults

    def fail_next(
        self,
        status: int = 500,
        count: int = 1,
        retry_after: float | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next `count` requests with `status`."""
        with self._lock:
            for _ in range(count):
                self._state.faults.append(Fault(status, retry_after, delay))

    def reject(self, contacts: Iterable[str]) -> None:
        """Answer 400 to any request carrying an event for these contacts."""
        with self._lock:
            self._state.rejected.update(contacts)

    def accept(self, contacts: Iterable[str]) -> None:
        """Take events for these contacts again, undoing `reject`."""
        with self._lock:
            self._state.rejected.difference_update(contacts)

    def expire(self) -> None:
        """Answer 401 from now on, as if the credentials were revoked."""
        with self._lock:
            self._state.expired = True

    def slow_down(self, seconds: float) -> None:
        """Wait this long before answering each request."""
        with self._lock:
            self._state.delay = seconds

    # ------------------------------------------------------------ inspection

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event accepted, first delivery only, in arrival order."""
        with self._lock:
            return list(self._state.events)

    @property
    def members(self) -> set[tuple[str, str]]:
        """`(segment, contact)` pairs entered and not exited, per the events."""
        with self._lock:
            return set(self._state.members)

    @property
    def duplicates(self) -> int:
        """Events received again after being accepted (dropped by id)."""
        with self._lock:
            return self._state.duplicates

    @property
    def requests(self) -> int:
        """Requests received, faults included."""
        with self._lock:
            return self._state.requests

    @property
    def bad_signatures(self) -> int:
        """Requests refused because their signature did not verify."""
        with self._lock:
            return self._state.bad_signatures

    # --------------------------------------------------------------- serving

    def _answer(self, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            state = self._state
            state.requests += 1
            delay = state.delay
            fault = state.faults.popleft() if state.faults else None
        if fault is not None:
            time.sleep(fault.delay or delay)
            extra = {}
            if fault.retry_after is not None:
                extra["Retry-After"] = f"{fault.retry_after:g}"
            return fault.status, extra, fault.body.encode()
        if delay:
            time.sleep(delay)
        refused = self._refuse(headers, body)
        if refused is not None:
            return refused
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, {}, b'{"error": "body is not JSON"}'
        events = payload.get("events", [payload]) if isinstance(payload, dict) else []
        with self._lock:
            if any(event.get("contact") in self._state.rejected for event in events):
                return 400, {}, b'{"error": "contact rejected"}'
            for event in events:
                self._accept(event)
        return 200, {}, b'{"ok": true}'

    def _refuse(
        self, headers: Any, body: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        with self._lock:
            expired = self._state.expired
        if expired:
            return 401, {}, b'{"error": "token expired"}'
        bearer = f"Bearer {self.token}"
        if self.token is not None and headers.get("Authorization") != bearer:
            return 401, {}, b'{"error": "bad token"}'
        if self.secret is not None:
            signed = verify_signature(
                self.secret,
                body,
                headers.get(TIMESTAMP_HEADER, ""),
                headers.get(SIGNATURE_HEADER, ""),
            )
            if not signed:
                with self._lock:
                    self._state.bad_signatures += 1
                return 401, {}, b'{"error": "bad signature"}'
        return None

    def _accept(self, event: dict[str, Any]) -> None:
        state = self._state
        identity = str(event.get("id"))
        if identity in state.seen:
            state.duplicates += 1
            return
        state.seen.add(identity)
        state.events.append(event)
        pair = (str(event.get("segment")), str(event.get("contact")))
        if event.get("type") == "segment.entered":
            state.members.add(pair)
        elif event.get("type") == "segment.exited":
            state.members.discard(pair)


class _Handler(BaseHTTPRequestHandler):
    owner: WebhookReceiver

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        status, headers, answer = self.owner._answer(self.headers, body)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer)
        except (BrokenPipeError, ConnectionResetError):
            # The sender gave up (a timeout, a killed run): what a real hook sees.
            self.close_connection = True

    def do_GET(self) -> None:
        state = {
            "events": self.owner.events,
            "members": sorted(self.owner.members),
            "duplicates": self.owner.duplicates,
            "requests": self.owner.requests,
        }
        answer = json.dumps(state).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        return


def main() -> None:
    """Run a receiver in the foreground until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--secret", help="Verify signatures with this secret.")
    parser.add_argument("--delay", type=float, default=0.0, help="Seconds per answer.")
    args = parser.parse_args()
    receiver = WebhookReceiver(secret=args.secret)
    receiver.slow_down(args.delay)
    print(receiver.start(args.port), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        receiver.stop()


if __name__ == "__main__":
    main()
