"""A fake HubSpot: an in-memory CRM served over HTTP on loopback, for tests and demos.

`FakeHubSpot` answers the endpoints pqlhub's HubSpot destination uses: contacts
batch upsert, read and create; contact properties; lists v3 and their memberships;
tasks, their batch create and upsert, and their search. Answers follow HubSpot's
OpenAPI files, and HubSpot's behaviour where the files say nothing: bearer tokens
and their scopes (401, 403), the ten-second rolling and daily rate limits with
their headers (429), and 207 answers for batches that partly failed.

When HubSpot's OpenAPI files can be found, every exchange is checked against them
(`pqlhub_hubspot.spec_check`) and each mismatch is kept in `violations`.

Tests inject faults with `fail_next`, `rate_limit_next`, `reject_inputs`,
`expire_token` and `slow_down`. A client in another process reaches the same
through two endpoints of the fake's own, never checked against the files:

- `POST /__fake/faults` with `{"kind": ..., **arguments}`, where the kind is
  `fail`, `rate_limit`, `reject`, `expire` or `slow` and the arguments are those of
  the method of that name: `{"kind": "fail", "count": 2, "status": 503}`;
- `GET /__fake/state`, answering `FakeHubSpot.state()`.

From a shell: `python -m pqlhub_hubspot.fake --port 8080`.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from pqlhub_hubspot.fake_crm import (
    ROUTES,
    ApiError,
    Call,
    Crm,
    JsonObject,
    Reply,
    Route,
    find_route,
    status_error,
)

if TYPE_CHECKING:
    from pqlhub_hubspot.spec_check import SpecChecker

__all__ = [
    "ALL_SCOPES",
    "DEFAULT_TOKEN",
    "FakeHubSpot",
    "RecordedRequest",
    "find_specs_dir",
    "main",
]

logger = logging.getLogger("pqlhub.plugins.hubspot.fake")

DEFAULT_TOKEN = "fake-token"
ALL_SCOPES = frozenset(
    scope for route in ROUTES for scopes in route.scopes for scope in scopes
)
SPECS_ENV = "PQLHUB_HUBSPOT_SPECS"
ADMIN_PREFIX = "/__fake/"
CONTENT_TYPE = "application/json;charset=utf-8"
DAY_SECONDS = 86_400.0
ROLLING_POLICY = "TEN_SECONDLY_ROLLING"
DAILY_POLICY = "DAILY"
POLICIES = (ROLLING_POLICY, "SECONDLY", DAILY_POLICY)
MISSING_TOKEN = (
    "Authentication credentials not found. This API supports OAuth 2.0 "
    "authentication and you can find more details at "
    "https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)


@dataclass(frozen=True)
class RecordedRequest:
    """A request the fake answered (its own `/__fake/` endpoints aside).

    Attributes:
        method: The HTTP method.
        path: The URL path.
        query: The query string's values, by name.
        json: The body parsed as JSON; its text when it is not JSON; None if empty.
        status: The status the fake answered with.
        time: When it arrived, by the fake's clock.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    json: Any
    status: int
    time: float


class _RateLimits:
    """Counts each token's requests: a rolling window and a daily total.

    The daily count starts again every 24 hours of the clock, from the first
    request; HubSpot's resets at midnight in the account's time zone.
    """

    def __init__(
        self, per_window: int, window: float, daily: int, clock: Callable[[], float]
    ) -> None:
        self.per_window = per_window
        self.window = window
        self.daily = daily
        self._clock = clock
        self._recent: dict[str, deque[float]] = {}
        self._days: dict[str, tuple[int, int]] = {}
        self._origin: float | None = None

    def take(self, token: str, rolling: bool) -> str | None:
        """Count a request, or return the policy it would break (not counting it)."""
        now = self._clock()
        recent = self._window(token, now)
        day, used = self._day(token, now)
        if used >= self.daily:
            return DAILY_POLICY
        if rolling and len(recent) >= self.per_window:
            return ROLLING_POLICY
        if rolling:
            recent.append(now)
        self._days[token] = (day, used + 1)
        return None

    def headers(self, token: str) -> dict[str, str]:
        """Return the `X-HubSpot-RateLimit-*` headers for the token's next answer."""
        now = self._clock()
        _, used = self._day(token, now)
        return {
            "X-HubSpot-RateLimit-Max": str(self.per_window),
            "X-HubSpot-RateLimit-Remaining": str(
                max(0, self.per_window - len(self._window(token, now)))
            ),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(round(self.window * 1000)),
            "X-HubSpot-RateLimit-Daily": str(self.daily),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, self.daily - used)),
        }

    def _window(self, token: str, now: float) -> deque[float]:
        recent = self._recent.setdefault(token, deque())
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        return recent

    def _day(self, token: str, now: float) -> tuple[int, int]:
        """Return the day's number and the token's count of requests that day."""
        if self._origin is None:
            self._origin = now
        day = int((now - self._origin) // DAY_SECONDS)
        counted = self._days.get(token)
        return (day, counted[1]) if counted and counted[0] == day else (day, 0)


@dataclass(frozen=True)
class _Fault:
    """One injected answer: an error status, or a 429 for a rate-limit policy."""

    status: int
    policy: str | None = None
    retry_after: float | None = None

    def reply(self) -> Reply:
        if self.policy is None:
            return status_error(self.status).reply()
        reply = _throttled_reply(self.policy)
        if self.retry_after is not None:
            reply.headers["Retry-After"] = f"{self.retry_after:g}"
        return reply


class FakeHubSpot:
    """An in-memory HubSpot, served over real HTTP on 127.0.0.1.

    Use it as a context manager (`with FakeHubSpot() as hub:` starts it on a free
    port, `hub.base_url` says where) or call `start` and `stop`.

    Args:
        tokens: Each accepted bearer token and the scopes granted to it. By default
            one token, `fake-token`, with every scope the fake checks.
        rate_limit: Requests each token may make per window.
        window_seconds: The length of the rolling window.
        daily_limit: Requests each token may make per day.
        specs_dir: The folder of HubSpot's OpenAPI files to check traffic against.
            By default the folder named by `PQLHUB_HUBSPOT_SPECS`, else the one
            `find_specs_dir` finds; when there is none, traffic goes unchecked,
            with a warning.
        membership_cap: The most record ids one list membership change may name.
        clock: Seconds, for rate limits and request times; tests pass a fake one.

    Raises:
        FileNotFoundError: When the folder given (or named by the environment)
            holds no OpenAPI file.
        ImportError: When a folder is given but openapi-core is not installed.
    """

    def __init__(
        self,
        *,
        tokens: Mapping[str, Collection[str]] | None = None,
        rate_limit: int = 100,
        window_seconds: float = 10.0,
        daily_limit: int = 250_000,
        specs_dir: Path | None = None,
        membership_cap: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        granted = tokens if tokens is not None else {DEFAULT_TOKEN: ALL_SCOPES}
        self.tokens = {token: frozenset(scopes) for token, scopes in granted.items()}
        self.crm = Crm(membership_cap)
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self.throttled = 0
        self._clock = clock
        self._limits = _RateLimits(rate_limit, window_seconds, daily_limit, clock)
        self._faults: deque[_Fault] = deque()
        self._expired: set[str] = set()
        self._delay = 0.0
        self._lock = threading.RLock()
        self._checker = _spec_checker(specs_dir)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ records

    @property
    def contacts(self) -> dict[str, dict[str, str]]:
        """Record id to the contact's properties, all strings."""
        return self.crm.contacts

    @property
    def lists(self) -> dict[str, JsonObject]:
        """List id to the list; `members` is the set of its record ids."""
        return self.crm.lists

    @property
    def properties(self) -> dict[str, JsonObject]:
        """Contact property name to its definition, options included."""
        return self.crm.properties

    @property
    def tasks(self) -> list[JsonObject]:
        """The tasks: `id`, `properties`, `contactIds`, `createdAt`, `updatedAt`."""
        return self.crm.tasks

    def contact_by_email(self, email: str) -> dict[str, str] | None:
        """Return the properties of the contact with this email (any case), or None."""
        return self.crm.contact_by_email(email)

    def list_by_name(self, name: str) -> JsonObject | None:
        """Return the list with this name (any case), or None."""
        return self.crm.list_by_name(name)

    def list_members(self, name: str) -> set[str]:
        """Return the emails of the members of the list with this name.

        Raises:
            KeyError: When no list has that name.
        """
        lst = self.list_by_name(name)
        if lst is None:
            raise KeyError(f"No list is named {name!r}.")
        return self.crm.member_emails(lst)

    def state(self) -> JsonObject:
        """Return the records and counters as JSON data (what `/__fake/state` sends)."""
        with self._lock:
            lists = {
                list_id: _list_state(lst, self.crm.member_emails(lst))
                for list_id, lst in self.crm.lists.items()
            }
            return copy.deepcopy(
                {
                    "contacts": self.crm.contacts,
                    "lists": lists,
                    "properties": self.crm.properties,
                    "tasks": self.crm.tasks,
                    "requests": len(self.requests),
                    "throttled": self.throttled,
                    "violations": self.violations,
                }
            )

    @property
    def validating(self) -> bool:
        """True when traffic is checked against HubSpot's OpenAPI files."""
        return self._checker is not None

    # ------------------------------------------------------------------- faults

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        """Answer the next `count` authorised requests with `status`, as errors."""
        if not 400 <= status <= 599:
            raise ValueError(f"A failure status is from 400 to 599, not {status}.")
        with self._lock:
            self._faults.extend(_Fault(status) for _ in range(count))

    def rate_limit_next(
        self,
        count: int = 1,
        policy: str = ROLLING_POLICY,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next `count` authorised requests with 429 for `policy`.

        Args:
            count: How many requests to refuse.
            policy: `TEN_SECONDLY_ROLLING`, `SECONDLY` or `DAILY`.
            retry_after: Seconds to send in a `Retry-After` header (none if None).
        """
        if policy not in POLICIES:
            known = ", ".join(POLICIES)
            raise ValueError(f"A rate-limit policy is one of {known}, not {policy!r}.")
        with self._lock:
            fault = _Fault(429, policy, retry_after)
            self._faults.extend(fault for _ in range(count))

    def reject_inputs(
        self, emails: Collection[str], message: str = "Email address {email} is invalid"
    ) -> None:
        """Fail batch inputs for these emails, from now on, with a 207 error each.

        Args:
            emails: The contacts' emails, in any case.
            message: The error's message; `{email}` stands for the input's email.
        """
        with self._lock:
            for email in emails:
                self.crm.rejected[email.casefold()] = message.replace("{email}", email)

    def expire_token(self, token: str) -> None:
        """Answer requests bearing this token with 401 from now on."""
        with self._lock:
            self._expired.add(token)

    def slow_down(self, seconds: float) -> None:
        """Wait this long before sending each answer (0 to stop)."""
        if seconds < 0:
            raise ValueError(f"A delay is zero or more seconds, not {seconds}.")
        self._delay = seconds

    # ------------------------------------------------------------------ serving

    @property
    def base_url(self) -> str:
        """Where the fake serves, like `http://127.0.0.1:8080`."""
        if self._server is None:
            raise RuntimeError("The fake HubSpot is not serving; call start() first.")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self, port: int = 0) -> str:
        """Serve on 127.0.0.1 in a background thread, and return the base URL.

        Args:
            port: The port; 0 picks a free one.
        """
        if self._server is not None:
            raise RuntimeError(f"The fake HubSpot already serves at {self.base_url}.")
        self._server = _Server(("127.0.0.1", port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # A short poll keeps stop() quick: tests start and stop many fakes.
            kwargs={"poll_interval": 0.01},
            name="fake-hubspot",
            daemon=True,
        )
        self._thread.start()
        logger.info("The fake HubSpot serves at %s.", self.base_url)
        return self.base_url

    def stop(self) -> None:
        """Stop serving; the records stay for inspection."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server, self._thread = None, None

    def __enter__(self) -> FakeHubSpot:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def handle(self, call: Call) -> Reply:
        """Answer one call; the HTTP handler's only way in."""
        if call.path.startswith(ADMIN_PREFIX):
            return self._admin(call)
        received = self._clock()
        reply = self._answer(call)
        if self._delay:
            time.sleep(self._delay)
        self._check(call, reply)
        with self._lock:
            self.requests.append(_recorded(call, reply.status, received))
        logger.info("%s %s answered %d.", call.method, call.path, reply.status)
        return reply

    # ---------------------------------------------------------------- answering

    def _answer(self, call: Call) -> Reply:
        try:
            with self._lock:
                route = _route(call)
                token = self._authenticate(call)
                self._authorize(token, route)
                return self._serve(token, route, call)
        except ApiError as exc:
            return exc.reply()
        except Exception:
            logger.exception(
                "The fake HubSpot failed on %s %s.", call.method, call.path
            )
            return status_error(500).reply()

    def _authenticate(self, call: Call) -> str:
        """Return the call's bearer token, if the fake accepts it."""
        kind, _, token = call.headers.get("authorization", "").partition(" ")
        if kind.lower() != "bearer" or not token:
            raise ApiError(401, "INVALID_AUTHENTICATION", MISSING_TOKEN)
        if token in self._expired:
            message = "The access token used to make this call has expired."
            raise ApiError(401, "INVALID_AUTHENTICATION", message)
        if token not in self.tokens:
            message = "The access token used to make this call is not valid."
            raise ApiError(401, "INVALID_AUTHENTICATION", message)
        return token

    def _authorize(self, token: str, route: Route) -> None:
        """Refuse a token that lacks every set of scopes the route accepts."""
        granted = self.tokens[token]
        if any(granted.issuperset(scopes) for scopes in route.scopes):
            return
        missing = [scope for scope in route.scopes[0] if scope not in granted]
        message = (
            "This app hasn't been granted all required scopes to make this call. "
            f"It needs {', '.join(missing)}."
        )
        detail = {
            "message": "One or more of the following scopes are required.",
            "context": {"requiredGranularScopes": missing},
        }
        raise ApiError(
            403,
            "MISSING_SCOPES",
            message,
            context={"requiredScopes": missing},
            errors=[detail],
            links={"scopes": "https://developers.hubspot.com/scopes"},
        )

    def _serve(self, token: str, route: Route, call: Call) -> Reply:
        """Answer an authorised call: rate limits, then faults, then the endpoint."""
        policy = self._limits.take(token, route.rate_limited)
        fault = _Fault(429, policy) if policy else None
        if fault is None and self._faults:
            fault = self._faults.popleft()
        if fault is not None:
            reply = fault.reply()
            if reply.status == 429:
                self.throttled += 1
        else:
            reply = _run(route, self.crm, call)
        if route.rate_limited:
            reply.headers.update(self._limits.headers(token))
        if fault is not None and fault.policy is not None:
            reply.headers.update(_exhausted_headers(fault.policy))
        return reply

    def _check(self, call: Call, reply: Reply) -> None:
        if self._checker is None:
            return
        from pqlhub_hubspot.spec_check import Exchange

        exchange = Exchange(
            method=call.method,
            path=call.path,
            query=call.query,
            headers=call.headers,
            body=call.body,
            status=reply.status,
            response_headers={**reply.headers, "Content-Type": CONTENT_TYPE},
            response_body=reply.encode(),
        )
        try:
            found = self._checker.check(exchange)
        except Exception as exc:
            logger.exception("Checking %s %s failed.", call.method, call.path)
            found = [f"{call.method} {call.path}: the check itself failed: {exc!r}"]
        for violation in found:
            logger.warning("The fake HubSpot's traffic breaks the spec: %s", violation)
        with self._lock:
            self.violations.extend(found)

    # -------------------------------------------------------------------- admin

    def _admin(self, call: Call) -> Reply:
        """Answer the fake's own endpoints, which HubSpot does not have."""
        try:
            if (call.method, call.path) == ("POST", "/__fake/faults"):
                return self._inject(call.json())
            if (call.method, call.path) == ("GET", "/__fake/state"):
                return Reply(200, self.state())
        except ApiError as exc:
            return exc.reply()
        message = f"The fake HubSpot has no {call.method} {call.path}."
        return Reply(404, {"message": message})

    def _inject(self, body: Any) -> Reply:
        actions: dict[str, Callable[..., None]] = {
            "fail": self.fail_next,
            "rate_limit": self.rate_limit_next,
            "reject": self.reject_inputs,
            "expire": self.expire_token,
            "slow": self.slow_down,
        }
        kind = body.get("kind") if isinstance(body, dict) else None
        action = actions.get(kind) if isinstance(kind, str) else None
        if action is None:
            known = ", ".join(actions)
            return Reply(400, {"message": f"Unknown fault kind {kind!r}; use {known}."})
        arguments = {key: value for key, value in body.items() if key != "kind"}
        try:
            action(**arguments)
        except (TypeError, ValueError) as exc:
            return Reply(400, {"message": f"The {kind} fault was not applied: {exc}"})
        return Reply(200, {"applied": kind})


def _route(call: Call) -> Route:
    """Return the call's route, having put its path parameters in the call."""
    found = find_route(call.method, call.path)
    if found is None:
        message = f"The fake HubSpot does not serve {call.method} {call.path}."
        raise ApiError(404, "OBJECT_NOT_FOUND", message)
    route, call.params = found
    return route


def _run(route: Route, crm: Crm, call: Call) -> Reply:
    try:
        return route.handler(crm, call)
    except ApiError as exc:
        return exc.reply()


def _throttled_reply(policy: str) -> Reply:
    """Return HubSpot's 429 for a rate-limit policy."""
    limit = "daily" if policy == DAILY_POLICY else policy.lower()
    body = {
        "status": "error",
        "message": f"You have reached your {limit} limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": policy,
        "requestId": str(uuid.uuid4()),
        # Not in HubSpot's documented example, but newer answers carry it and the
        # spec's Error schema requires it.
        "category": "RATE_LIMITS",
    }
    return Reply(429, body)


def _exhausted_headers(policy: str) -> dict[str, str]:
    if policy == DAILY_POLICY:
        return {"X-HubSpot-RateLimit-Daily-Remaining": "0"}
    return {"X-HubSpot-RateLimit-Remaining": "0"}


def _recorded(call: Call, status: int, received: float) -> RecordedRequest:
    body: Any = None
    if call.body:
        try:
            body = json.loads(call.body)
        except ValueError:
            body = call.body.decode(errors="replace")
    return RecordedRequest(call.method, call.path, call.query, body, status, received)


def _list_state(lst: Mapping[str, Any], emails: set[str]) -> JsonObject:
    shown = {
        key: value for key, value in lst.items() if key not in ("members", "joinedAt")
    }
    return {**shown, "members": sorted(emails)}


# -------------------------------------------------------------------- the specs


def find_specs_dir(start: Path | None = None) -> Path | None:
    """Return the `shared/specs/hubspot` folder beside a checkout holding `start`.

    Looks in each folder above `start` (this file by default) for a
    `shared/specs/hubspot` folder, and returns the first found, or None.
    """
    here = (start or Path(__file__)).resolve()
    for folder in here.parents:
        candidate = folder / "shared" / "specs" / "hubspot"
        if candidate.is_dir():
            return candidate
    return None


def _spec_checker(specs_dir: Path | None) -> SpecChecker | None:
    """Return a checker for the folder asked for or found, or None without one."""
    from_env = os.environ.get(SPECS_ENV)
    explicit = specs_dir or (Path(from_env) if from_env else None)
    folder = explicit or find_specs_dir()
    if folder is None:
        logger.warning(
            "No HubSpot OpenAPI files were found (pass specs_dir or set %s); the "
            "fake HubSpot serves without checking its traffic.",
            SPECS_ENV,
        )
        return None
    try:
        from pqlhub_hubspot.spec_check import SpecChecker
    except ImportError as exc:
        if explicit is not None:
            raise ImportError(
                "Checking traffic against HubSpot's OpenAPI files needs openapi-core: "
                "pip install 'pqlhub-hubspot[fake]'."
            ) from exc
        logger.warning(
            "openapi-core is not installed, so the fake HubSpot serves without "
            "checking its traffic against %s.",
            folder,
        )
        return None
    return SpecChecker(folder)


# ---------------------------------------------------------------------- serving


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that knows its fake."""

    daemon_threads = True
    # Keep-alive connections may outlive a test; do not wait for them on close.
    block_on_close = False

    def __init__(self, address: tuple[str, int], fake: FakeHubSpot) -> None:
        super().__init__(address, _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    """Turns each HTTP request into a `Call` for the fake, and its `Reply` back."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this, delayed ACKs hold each
    # answer on a kept-alive connection for 40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep http.server quiet: the fake logs each request itself."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        url = urlsplit(self.path)
        call = Call(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
            base_url=self.server.fake.base_url,
        )
        reply = self.server.fake.handle(call)
        data = reply.encode()
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


# -------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a fake HubSpot in the foreground until interrupted (Ctrl-C).

    Prints the base URL on its own line first, so a script can read it.
    """
    parser = argparse.ArgumentParser(
        prog="python -m pqlhub_hubspot.fake",
        description="Serve a fake HubSpot on 127.0.0.1 until interrupted.",
    )
    parser.add_argument("--port", type=int, default=0, help="port (0: any free one)")
    parser.add_argument(
        "--token",
        action="append",
        help=f"a bearer token to accept, with every scope (repeatable; "
        f"default {DEFAULT_TOKEN})",
    )
    parser.add_argument(
        "--rate-limit", type=int, default=100, help="requests per token per 10 s"
    )
    parser.add_argument(
        "--specs", type=Path, help="folder of HubSpot's OpenAPI files to check against"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    tokens = dict.fromkeys(args.token or [DEFAULT_TOKEN], ALL_SCOPES)
    fake = FakeHubSpot(tokens=tokens, rate_limit=args.rate_limit, specs_dir=args.specs)
    print(fake.start(args.port), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
