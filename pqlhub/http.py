"""Shared HTTP for destinations and sources: one client, one retry policy, one log line.

`HttpClient` wraps an `httpx.Client` with what every vendor integration needs:

- timeouts and a pqlhub User-Agent;
- retries with tenacity on transient failures (connection errors, timeouts, 429
  and 5xx), with exponential backoff and jitter, honouring `Retry-After`; waiting
  out a rate limit (429) does not count as a failed attempt;
- an optional `RateLimiter` that keeps requests under the vendor's window;
- 401 and 403 raised as `FatalSyncError`, naming the destination and what to check;
- one INFO line per request (method, redacted URL, status, time), and secrets
  redacted from URLs, headers and bodies in every log line and error.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx
import tenacity

from pqlhub.errors import FatalSyncError, RetriableSyncError
from pqlhub.redaction import RedactingFilter, redact, redact_url
from pqlhub.version import __version__

__all__ = [
    "HttpClient",
    "RateLimiter",
    "RetryPolicy",
    "TransientHttpError",
    "retry_after_seconds",
]

logger = logging.getLogger(__name__)

# httpx logs every request's full URL at INFO on its own logger; a secret in a
# URL must not reach an embedder's log through it.
logging.getLogger("httpx").addFilter(RedactingFilter())

USER_AGENT: Final = f"pqlhub/{__version__} (+https://pqlhub.dev)"
RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried.

    Attributes:
        attempts: The most attempts of one request that fail for reasons other
            than a rate limit (the first try included).
        base_delay: The first backoff, in seconds; it doubles each time.
        max_delay: The longest single wait, in seconds.
        max_rate_limit_wait: The most seconds spent waiting out rate limits for
            one request before giving up.
        statuses: HTTP statuses retried.
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_rate_limit_wait: float = 300.0
    statuses: frozenset[int] = RETRY_STATUSES


class RateLimiter:
    """Keeps calls under `requests` per any window of `per_seconds` seconds.

    Thread-safe: concurrent senders share one limiter per destination.
    """

    def __init__(
        self,
        requests: int,
        per_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.requests = requests
        self.per_seconds = per_seconds
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait until a request may be sent; return the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                while self._sent and now - self._sent[0] >= self.per_seconds:
                    self._sent.popleft()
                if len(self._sent) < self.requests:
                    self._sent.append(now)
                    return waited
                pause = self.per_seconds - (now - self._sent[0])
            self._sleep(pause)
            waited += pause

    def use_up(self, remaining: int) -> None:
        """Trust the vendor's count of requests left in its window, when lower.

        Another client sharing the same allowance (a second pqlhub, the vendor's
        own integrations) uses slots this limiter cannot see; marking them used
        holds our next requests instead of walking into a 429.
        """
        with self._lock:
            now = self._clock()
            while self._sent and now - self._sent[0] >= self.per_seconds:
                self._sent.popleft()
            free = self.requests - len(self._sent)
            self._sent.extend([now] * max(0, free - max(0, remaining)))

    def pause(self, seconds: float) -> None:
        """Hold every sender for `seconds` (the vendor said it is over its limit)."""
        with self._lock:
            floor = self._clock() + seconds - self.per_seconds
            # Fill the window with the pause's end so acquire() waits it out, but
            # keep later sends: a pause shorter than the window frees no slot early.
            padded = [floor] * (self.requests - len(self._sent)) + list(self._sent)
            self._sent = deque(max(floor, sent) for sent in padded)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Return the wait a response's `Retry-After` header asks for, if any."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


class TransientHttpError(Exception):
    """An attempt that failed in a way worth retrying.

    A vendor's `classify` hook raises it for responses that its status does not
    mark as transient (a 400 that really means "locked, try again").

    Args:
        message: What happened, as a sentence.
        response: The response, when there was one.
        wait: Seconds to wait before the next attempt, when the vendor said.
        rate_limited: Whether the wait is a rate limit, which does not count as
            a failed attempt.
    """

    def __init__(
        self,
        message: str,
        response: httpx.Response | None = None,
        wait: float | None = None,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(message)
        self.response = response
        self.wait = wait
        self.rate_limited = rate_limited


Classifier = Callable[[httpx.Response], TransientHttpError | None]


class HttpClient:
    """An HTTP client for one destination or source, with pqlhub's policy built in.

    Args:
        name: The destination or source block's name, used in messages.
        base_url: Prefix of every request's URL.
        headers: Headers sent with every request (credentials included; they
            are never logged).
        timeout: Seconds allowed per request.
        policy: The retry policy.
        rate_limiter: Shared limiter, or None.
        transport: An httpx transport, for tests.
        sleep: The function that waits (injectable so tests need not sleep).
        classify: Optional vendor hook that inspects each response and returns
            a `TransientHttpError` to retry it (or raises `FatalSyncError` to stop),
            for vendors with their own signals; status rules apply otherwise.
        fatal_hint: What a 401 or 403 message tells the user to check.
    """

    def __init__(
        self,
        name: str,
        base_url: str = "",
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        policy: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        classify: Classifier | None = None,
        fatal_hint: str = "the credentials in the recipe",
    ) -> None:
        self.name = name
        self.policy = policy or RetryPolicy()
        self.rate_limiter = rate_limiter
        self.fatal_hint = fatal_hint
        self._sleep = sleep
        self._classify = classify
        self._client = httpx.Client(
            base_url=base_url,
            headers={"User-Agent": USER_AGENT, **(headers or {})},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        """Close the underlying connections."""
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        fatal: Collection[int] = (401, 403),
    ) -> httpx.Response:
        """Send a request, retrying transient failures; return the final response.

        A response with a status other than 401, 403, 429 and 5xx is returned as
        it is, for the caller to interpret (a 400 may be one bad record).

        Raises:
            FatalSyncError: On 401 or 403 (or the statuses in `fatal`).
            RetriableSyncError: When retries are exhausted.
        """
        spent = _Spent()

        def attempt() -> httpx.Response:
            return self._attempt(method, url, json, content, params, headers, fatal)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientHttpError),
            stop=self._stop(spent),
            wait=self._wait(spent),
            sleep=self._sleep,
            before_sleep=self._log_retry(spent),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except TransientHttpError as exc:
            response = exc.response
            retry_after = exc.wait
            msg = f"{self.name}: {exc} Gave up after retrying."
            if response is not None:
                retry_after = retry_after_seconds(response) or retry_after
            raise RetriableSyncError(redact(msg), retry_after) from None

    def _attempt(
        self,
        method: str,
        url: str,
        json: Any,
        content: bytes | None,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        fatal: Collection[int],
    ) -> httpx.Response:
        if self.rate_limiter is not None:
            self.rate_limiter.acquire()
        request = self._client.build_request(
            method, url, json=json, content=content, params=params, headers=headers
        )
        shown = redact_url(str(request.url))
        started = time.perf_counter()
        try:
            response = self._client.send(request)
        except httpx.TimeoutException as exc:
            logger.info("%s %s -> timeout after %.2f s", method, shown, _since(started))
            msg = f"{method} {shown} timed out."
            raise TransientHttpError(msg) from exc
        except httpx.TransportError as exc:
            logger.info("%s %s -> %s", method, shown, type(exc).__name__)
            msg = f"{method} {shown} failed: {redact(str(exc)) or type(exc).__name__}."
            raise TransientHttpError(msg) from exc
        logger.info(
            "%s %s -> %d in %.2f s",
            method,
            shown,
            response.status_code,
            _since(started),
        )
        logger.debug("Response body: %s", redact(response.text[:2000]))
        return self._interpret(response, method, shown, fatal)

    def _interpret(
        self,
        response: httpx.Response,
        method: str,
        shown: str,
        fatal: Collection[int],
    ) -> httpx.Response:
        status = response.status_code
        if status in fatal:
            detail = _short(response)
            msg = (
                f"{self.name} refused the request {method} {shown} with HTTP {status}"
                f"{detail}. Check {self.fatal_hint}."
            )
            raise FatalSyncError(redact(msg))
        if self._classify is not None:
            verdict = self._classify(response)
            if verdict is not None:
                raise verdict
        if status in self.policy.statuses:
            wait = retry_after_seconds(response)
            msg = f"{method} {shown} answered HTTP {status}{_short(response)}."
            raise TransientHttpError(msg, response, wait, rate_limited=status == 429)
        return response

    # Stop and wait only read `spent`, and the log updates it once a retry is
    # certain: tenacity's order of calling stop and wait differs between versions.

    def _stop(self, spent: _Spent) -> Callable[[tenacity.RetryCallState], bool]:
        policy = self.policy

        def stop(state: tenacity.RetryCallState) -> bool:
            failure = _failure(state)
            if failure is not None and failure.rate_limited:
                asked = failure.wait
                if asked is None:
                    asked = self._backoff(spent)
                return spent.rate_wait + asked > policy.max_rate_limit_wait
            return spent.failed + 1 >= policy.attempts

        return stop

    def _wait(self, spent: _Spent) -> Callable[[tenacity.RetryCallState], float]:
        policy = self.policy

        def wait(state: tenacity.RetryCallState) -> float:
            failure = _failure(state)
            if failure is not None and failure.wait is not None:
                return min(failure.wait, policy.max_rate_limit_wait)
            backoff = self._backoff(spent)
            return random.uniform(backoff / 2, backoff)

        return wait

    def _backoff(self, spent: _Spent) -> float:
        """Return the longest backoff after the failures retried so far."""
        policy = self.policy
        return min(policy.max_delay, policy.base_delay * 2.0**spent.failed)

    def _log_retry(self, spent: _Spent) -> Callable[[tenacity.RetryCallState], None]:
        def log(state: tenacity.RetryCallState) -> None:
            wait = state.next_action.sleep if state.next_action else 0.0
            failure = _failure(state)
            if failure is not None and failure.rate_limited:
                spent.rate_wait += wait
                if self.rate_limiter is not None:
                    self.rate_limiter.pause(wait)
            else:
                spent.failed += 1
            logger.warning(
                "%s: %s Retrying in %.1f s (attempt %d).",
                self.name,
                failure,
                wait,
                state.attempt_number,
            )

        return log


@dataclass
class _Spent:
    """What one request has used up so far: failed attempts and rate-limit waits.

    Attributes:
        failed: Attempts that failed other than by a rate limit and were retried.
        rate_wait: Seconds waited out for rate limits.
    """

    failed: int = 0
    rate_wait: float = 0.0


def _failure(state: tenacity.RetryCallState) -> TransientHttpError | None:
    if state.outcome is None or not state.outcome.failed:
        return None
    exc = state.outcome.exception()
    return exc if isinstance(exc, TransientHttpError) else None


def _since(started: float) -> float:
    return time.perf_counter() - started


def _short(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    if not text:
        return ""
    return f" ({redact(text[:200])})"
