"""The shared HTTP client: retries, Retry-After, fatal statuses, logs and redaction."""

from __future__ import annotations

import email.utils
import logging
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from pqlhub.errors import FatalSyncError, RetriableSyncError
from pqlhub.http import USER_AGENT, HttpClient, RateLimiter, RetryPolicy
from pqlhub.redaction import Secret
from pqlhub.version import __version__

QUERY_TOKEN = "qs-token-4f2a9c"
HUBSPOT_KEY = "hk-77d1e0b3"
PATH_TOKEN = "path-secret-8b1c55"
API = "https://api.example.test"


@dataclass(frozen=True)
class Answer:
    """One scripted answer of the fake server."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = "{}"
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    """One request the fake server got."""

    method: str
    path: str
    headers: Mapping[str, str]


class ScriptedServer:
    """A loopback HTTP server that answers from a script, then with 200 `{}`."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *answers: Answer) -> None:
        with self._lock:
            self.answers.extend(answers)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _next(self, request: Received) -> Answer:
        with self._lock:
            self.received.append(request)
            return self.answers.pop(0) if self.answers else Answer()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._answer()

            def _answer(self) -> None:
                seen = Received(self.command, self.path, dict(self.headers.items()))
                answer = server._next(seen)
                time.sleep(answer.delay)
                body = answer.body.encode()
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except ConnectionError:
                    pass  # The client timed out and hung up, as the test meant.

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


class Sleeps(list[float]):
    """A `sleep` that records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class FakeClock:
    """A monotonic clock that only moves when its `sleep` is called."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    """A scripted fake server on 127.0.0.1."""
    scripted = ScriptedServer()
    scripted.start()
    yield scripted
    scripted.stop()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def _client(server: ScriptedServer, sleeps: Sleeps, **options: object) -> HttpClient:
    options.setdefault("policy", RetryPolicy(attempts=3, base_delay=1.0))
    options.setdefault("sleep", sleeps)
    return HttpClient(
        "demo",
        base_url=server.url,
        fatal_hint="the API token's scopes",
        **options,  # type: ignore[arg-type]
    )


def _refused_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("pqlhub") and record.levelno == level
    ]


# --------------------------------------------------------------------- rate limits


def test_http_429_waits_retry_after_seconds_then_succeeds(
    server: ScriptedServer, sleeps: Sleeps
) -> None:
    server.script(Answer(429, {"Retry-After": "7"}), Answer(200, body='{"ok": 1}'))

    with _client(server, sleeps) as client:
        response = client.request("GET", "/contacts")

    assert response.json() == {"ok": 1}
    assert sleeps == [7.0]
    assert len(server.received) == 2


def test_http_429_waits_retry_after_http_date(
    server: ScriptedServer, sleeps: Sleeps
) -> None:
    moment = datetime.now(UTC) + timedelta(seconds=30)
    when = email.utils.format_datetime(moment, usegmt=True)
    server.script(Answer(429, {"Retry-After": when}))

    with _client(server, sleeps) as client:
        client.request("GET", "/contacts")

    assert len(sleeps) == 1
    # The date has whole seconds, so the wait is at most a second short.
    assert 28.5 <= sleeps[0] <= 30.0


def test_http_429_logs_one_warning_with_wait_attempt_and_redacted_url(
    server: ScriptedServer, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    server.script(Answer(429, {"Retry-After": "7"}))
    caplog.set_level(logging.INFO)

    with _client(server, sleeps) as client:
        client.request("GET", "/contacts", params={"api_key": QUERY_TOKEN})

    [warning] = _messages(caplog, logging.WARNING)
    assert warning.startswith("demo: GET ")
    assert f"{server.url}/contacts?api_key=***" in warning
    assert "HTTP 429" in warning
    assert "Retrying in 7.0 s (attempt 1)." in warning
    assert QUERY_TOKEN not in warning


def test_http_429s_do_not_count_as_failed_attempts(
    server: ScriptedServer, sleeps: Sleeps
) -> None:
    limited = Answer(429, {"Retry-After": "1"})
    server.script(limited, limited, limited, Answer(200))

    with _client(server, sleeps, policy=RetryPolicy(attempts=2)) as client:
        response = client.request("GET", "/contacts")

    assert response.status_code == 200
    assert sleeps == [1.0, 1.0, 1.0]


def test_http_rate_limit_waits_are_capped_in_total(
    server: ScriptedServer, sleeps: Sleeps
) -> None:
    server.script(*[Answer(429, {"Retry-After": "4"})] * 10)
    policy = RetryPolicy(attempts=2, max_rate_limit_wait=10)

    with (
        _client(server, sleeps, policy=policy) as client,
        pytest.raises(RetriableSyncError, match=r"^demo: GET .* HTTP 429") as caught,
    ):
        client.request("GET", "/contacts")

    assert sum(sleeps) <= 10
    assert sleeps == [4.0, 4.0]
    assert caught.value.retry_after == 4.0


def test_http_retry_after_beyond_the_cap_gives_up_at_once(
    server: ScriptedServer, sleeps: Sleeps
) -> None:
    server.script(Answer(429, {"Retry-After": "3600"}))
    policy = RetryPolicy(max_rate_limit_wait=300)

    with (
        _client(server, sleeps, policy=policy) as client,
        pytest.raises(RetriableSyncError) as caught,
    ):
        client.request("GET", "/contacts")

    assert sleeps == []
    assert caught.value.retry_after == 3600.0


def test_http_429_pauses_the_shared_rate_limiter(server: ScriptedServer) -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, 1.0, clock=clock, sleep=clock.sleep)
    others: list[float] = []

    def sleep(seconds: float) -> None:
        # Another sender sharing the limiter asks to send while the client waits.
        others.append(limiter.acquire())

    server.script(Answer(429, {"Retry-After": "3"}))

    with _client(server, Sleeps(), rate_limiter=limiter, sleep=sleep) as client:
        response = client.request("GET", "/contacts")

    assert response.status_code == 200
    assert others == [pytest.approx(3.0)]
    assert clock.sleeps == [pytest.approx(3.0)]


# ---------------------------------------------------------------- server failures


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_http_5xx_is_retried_then_succeeds(
    server: ScriptedServer, sleeps: Sleeps, status: int
) -> None:
    server.script(Answer(status), Answer(status), Answer(200))

    with _client(server, sleeps) as client:
        response = client.request("POST", "/contacts", json={"a": 1})

    assert response.status_code == 200
    assert len(server.received) == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_http_5xx_gives_up_after_attempts(
    server: ScriptedServer, sleeps: Sleeps, status: int
) -> None:
    server.script(*[Answer(status, body="upstream broke")] * 5)

    with (
        _client(server, sleeps) as client,
        pytest.raises(RetriableSyncError) as caught,
    ):
        client.request("GET", "/contacts")

    assert len(server.received) == 3
    assert str(caught.value) == (
        f"demo: GET {server.url}/contacts answered HTTP {status} (upstream broke)."
        " Gave up after retrying."
    )
    assert caught.value.retry_after is None


def test_http_backoff_doubles_within_bounds(
    server: ScriptedServer, sleeps: Sleeps
) -> None:
    server.script(*[Answer(503)] * 6)
    policy = RetryPolicy(attempts=6, base_delay=1.0, max_delay=4.0)

    with (
        _client(server, sleeps, policy=policy) as client,
        pytest.raises(RetriableSyncError),
    ):
        client.request("GET", "/contacts")

    assert len(sleeps) == 5
    ceilings = [1.0, 2.0, 4.0, 4.0, 4.0]
    for waited, ceiling in zip(sleeps, ceilings, strict=True):
        assert ceiling / 2 <= waited <= ceiling


def test_http_connection_refused_is_retried_then_retriable(
    sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    policy = RetryPolicy(attempts=3, base_delay=0.1)

    with (
        HttpClient("demo", _refused_url(), policy=policy, sleep=sleeps) as client,
        pytest.raises(RetriableSyncError, match=r"^demo: GET .*/contacts failed: "),
    ):
        client.request("GET", "/contacts")

    assert len(sleeps) == 2
    assert len(_messages(caplog, logging.WARNING)) == 2
    infos = _messages(caplog, logging.INFO)
    assert len(infos) == 3
    assert all(line.endswith("/contacts -> ConnectError") for line in infos)


def test_http_read_timeout_is_retried_then_retriable(
    server: ScriptedServer, sleeps: Sleeps
) -> None:
    server.script(*[Answer(delay=1.0)] * 2)
    policy = RetryPolicy(attempts=2, base_delay=0.1)

    with (
        _client(server, sleeps, policy=policy, timeout=0.05) as client,
        pytest.raises(RetriableSyncError, match=r"/contacts timed out\. Gave up"),
    ):
        client.request("GET", "/contacts")

    assert len(sleeps) == 1
    assert len(server.received) == 2


def test_http_connect_timeout_is_retried_then_succeeds(sleeps: Sleeps) -> None:
    calls: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectTimeout("connect timed out", request=request)
        return httpx.Response(200, json={"ok": True})

    transport = httpx.MockTransport(answer)
    client = HttpClient("demo", API, sleep=sleeps, transport=transport)
    with client:
        response = client.request("GET", "/contacts")

    assert response.json() == {"ok": True}
    assert len(calls) == 2
    assert len(sleeps) == 1


# ------------------------------------------------------------ answers not retried


@pytest.mark.parametrize("status", [401, 403])
def test_http_401_and_403_are_fatal_at_once(
    server: ScriptedServer, sleeps: Sleeps, status: int
) -> None:
    server.script(Answer(status, body='{"message": "token expired"}'))

    with (
        _client(server, sleeps) as client,
        pytest.raises(FatalSyncError) as caught,
    ):
        client.request("GET", "/contacts")

    assert str(caught.value) == (
        f"demo refused the request GET {server.url}/contacts with HTTP {status}"
        ' ({"message": "token expired"}). Check the API token\'s scopes.'
    )
    assert sleeps == []
    assert len(server.received) == 1


def test_http_400_is_returned_to_the_caller(
    server: ScriptedServer, sleeps: Sleeps
) -> None:
    server.script(Answer(400, body='{"error": "bad email"}'))

    with _client(server, sleeps) as client:
        response = client.request("POST", "/contacts", json={"email": "x"})

    assert response.status_code == 400
    assert response.json() == {"error": "bad email"}
    assert sleeps == []
    assert len(server.received) == 1


def test_http_classify_hook_retries_a_vendor_signal(
    server: ScriptedServer, sleeps: Sleeps
) -> None:
    from pqlhub.http import TransientHttpError

    def classify(response: httpx.Response) -> TransientHttpError | None:
        if response.status_code == 409:
            return TransientHttpError("The record is locked.", response, wait=2.0)
        return None

    server.script(Answer(409), Answer(200))

    with _client(server, sleeps, classify=classify) as client:
        response = client.request("GET", "/contacts")

    assert response.status_code == 200
    assert sleeps == [2.0]


# ------------------------------------------------------------------ logs, headers


def test_http_logs_one_info_line_per_request(
    server: ScriptedServer, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    server.script(Answer(503), Answer(201))
    caplog.set_level(logging.INFO)

    with _client(server, sleeps) as client:
        client.request("POST", "/contacts", params={"hapikey": HUBSPOT_KEY})

    infos = _messages(caplog, logging.INFO)
    shown = f"{server.url}/contacts?hapikey=***"
    assert len(infos) == 2
    assert infos[0].startswith(f"POST {shown} -> 503 in ")
    assert infos[1].startswith(f"POST {shown} -> 201 in ")
    assert all(line.endswith(" s") for line in infos)


def test_http_sends_pqlhubs_user_agent(server: ScriptedServer, sleeps: Sleeps) -> None:
    with _client(server, sleeps, headers={"X-Extra": "1"}) as client:
        client.request("GET", "/contacts")

    [received] = server.received
    assert received.headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith(f"pqlhub/{__version__} ")
    assert received.headers["X-Extra"] == "1"


# -------------------------------------------------------------------- redaction


def _secret_url() -> str:
    path_token = Secret(PATH_TOKEN, "env:HOOK_PATH")
    return (
        f"/hooks/{path_token.reveal()}/contacts"
        f"?api_key={QUERY_TOKEN}&hapikey={HUBSPOT_KEY}"
    )


def _assert_no_secret(text: str) -> None:
    for value in (QUERY_TOKEN, HUBSPOT_KEY, PATH_TOKEN):
        assert value not in text


@pytest.mark.parametrize(
    ("answers", "error"),
    [
        pytest.param([Answer(500, body=PATH_TOKEN)] * 3, RetriableSyncError, id="5xx"),
        pytest.param(
            [Answer(429, {"Retry-After": "400"})], RetriableSyncError, id="429"
        ),
        pytest.param([Answer(401, body=PATH_TOKEN)], FatalSyncError, id="401"),
    ],
)
def test_http_secrets_never_reach_logs_or_errors(
    server: ScriptedServer,
    sleeps: Sleeps,
    caplog: pytest.LogCaptureFixture,
    answers: list[Answer],
    error: type[Exception],
) -> None:
    server.script(*answers)
    caplog.set_level(logging.DEBUG)

    with _client(server, sleeps) as client, pytest.raises(error) as caught:
        client.request("GET", _secret_url())

    assert server.received[0].path.startswith(f"/hooks/{PATH_TOKEN}/")
    _assert_no_secret(str(caught.value))
    pqlhub_records = [r for r in caplog.records if r.name.startswith("pqlhub")]
    assert pqlhub_records
    for record in pqlhub_records:
        _assert_no_secret(record.getMessage())


def test_http_secrets_never_reach_transport_errors(
    sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url.path}", request=request)

    caplog.set_level(logging.DEBUG)
    transport = httpx.MockTransport(answer)
    client = HttpClient("demo", API, sleep=sleeps, transport=transport)
    with client, pytest.raises(RetriableSyncError) as caught:
        client.request("GET", _secret_url())

    assert "cannot reach /hooks/***/contacts" in str(caught.value)
    _assert_no_secret(str(caught.value))
    for record in caplog.records:
        if record.name.startswith("pqlhub"):
            _assert_no_secret(record.getMessage())


# ------------------------------------------------------------------ rate limiter


def test_rate_limiter_keeps_at_most_n_calls_in_any_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3, 1.0, clock=clock, sleep=clock.sleep)

    sent = []
    for _ in range(10):
        limiter.acquire()
        sent.append(clock.now)

    for first, fourth in zip(sent, sent[3:], strict=False):
        assert fourth - first >= 1.0
    assert sent[:3] == [1000.0] * 3
    assert sent[3] == pytest.approx(1001.0)


def test_rate_limiter_acquire_returns_the_wait() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, 2.0, clock=clock, sleep=clock.sleep)

    assert limiter.acquire() == 0.0
    clock.now += 0.5
    assert limiter.acquire() == pytest.approx(1.5)


def test_rate_limiter_pause_holds_senders() -> None:
    clock = FakeClock()
    limiter = RateLimiter(5, 1.0, clock=clock, sleep=clock.sleep)

    limiter.pause(30.0)
    waited = limiter.acquire()

    assert waited == pytest.approx(30.0)
    assert clock.now == pytest.approx(1030.0)


def test_rate_limiter_short_pause_opens_no_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, 10.0, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.acquire()

    limiter.pause(1.0)
    sent = []
    for _ in range(2):
        limiter.acquire()
        sent.append(clock.now)

    # The pause may only add to the wait: the window still allows two per 10 s.
    assert sent[0] >= 1010.0


def test_rate_limiter_is_shared_safely_between_threads() -> None:
    readings = threading.local()

    def clock() -> float:
        # Remember, per thread, the reading that acquire() recorded as sent.
        readings.last = time.monotonic()
        return float(readings.last)

    limiter = RateLimiter(5, 0.1, clock=clock)
    sent: list[float] = []
    lock = threading.Lock()

    def sender() -> None:
        for _ in range(5):
            limiter.acquire()
            with lock:
                sent.append(readings.last)

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    sent.sort()
    assert len(sent) == 20
    for first, sixth in zip(sent, sent[5:], strict=False):
        assert sixth - first >= 0.1
