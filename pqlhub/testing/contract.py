"""The destination contract: tests every destination plugin runs against itself.

Subclass `RemoteDestinationContract` in the tests of a destination behind an API
(or `DestinationContract`, for one with no server to fail, such as a file), point
it at the plugin's fake vendor server, and pytest collects the contract's tests:

    class TestMyDestination(RemoteDestinationContract):
        enter_action = "add_to_list"
        exit_action = "remove_from_list"

        @pytest.fixture
        def fake(self):
            with MyFakeVendor() as server:        # must satisfy ContractFake
                yield server

        def make_destination(self, fake, context):
            return MyDestination({"base_url": fake.url, ...}, context)

        def secrets(self, fake):
            return [fake.token]

The tests drive the destination the way a run does (through
`pqlhub.sync.apply_batch`, with the run's HTTP retry policy), but wait for no real
time: sleeps are recorded instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pytest

from pqlhub.connectors import (
    Batch,
    Change,
    Destination,
    DestinationContext,
    FailureKind,
    Outcome,
    OutcomeStatus,
)
from pqlhub.errors import FatalSyncError
from pqlhub.http import HttpClient, RateLimiter, RetryPolicy
from pqlhub.plan import change_id
from pqlhub.sync import apply_batch

__all__ = [
    "ContractFake",
    "DestinationContract",
    "RecordingSleep",
    "RemoteDestinationContract",
    "make_changes",
]


class ContractFake(Protocol):
    """What the contract needs from a plugin's fake vendor server."""

    @property
    def members(self) -> set[tuple[str, str]]:
        """`(segment, contact)` pairs the vendor holds, as the destination maps them."""

    def fail_next(
        self, status: int = 500, count: int = 1, retry_after: float | None = None
    ) -> None:
        """Answer the next `count` requests with `status` (and `Retry-After`)."""

    def reject(self, contacts: Sequence[str]) -> None:
        """Refuse any record of these contacts as invalid data."""

    def expire(self) -> None:
        """Refuse the credentials from now on (401)."""


class RecordingSleep:
    """A stand-in for `time.sleep` that records the waits instead of waiting.

    Its `clock` advances by the waits recorded, so a rate limiter given both
    sees time pass exactly as it asked, and never spins.
    """

    def __init__(self) -> None:
        self.waits: list[float] = []
        self._now = 0.0

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self._now += max(0.0, seconds)

    def clock(self) -> float:
        """The time as the recorded waits have moved it, in seconds."""
        return self._now


def make_changes(
    contacts: Sequence[str], segment: str, kind: str = "enter", sync: str = "contract"
) -> list[Change]:
    """Build changes for contacts `c@example.com`-style keys, with simple fields."""
    return [
        Change(
            id=change_id(sync, segment, key, kind, "contract"),
            key=key,
            segment=segment,
            kind=kind,  # type: ignore[arg-type]
            fields={"email": key, "firstname": "Ada"},
        )
        for key in contacts
    ]


class DestinationContract:
    """The tests every destination must pass; subclass it and fill in the blanks."""

    enter_action: ClassVar[str]
    """The action the contract uses on enter."""

    exit_action: ClassVar[str | None] = None
    """The action it uses on exit, or None if the destination has none."""

    enter_options: ClassVar[dict[str, Any]] = {}
    exit_options: ClassVar[dict[str, Any]] = {}

    segment: ClassVar[str] = "Trial: Engineering - Qualified"
    contacts: ClassVar[tuple[str, ...]] = tuple(
        f"contract-{n}@example.com" for n in range(5)
    )

    def make_destination(self, fake: Any, context: DestinationContext) -> Destination:
        """Build the destination under test, configured against `fake`."""
        raise NotImplementedError(
            "Implement make_destination(fake, context) to build the destination."
        )

    def secrets(self, fake: Any) -> Sequence[str]:
        """Return the secret values the destination uses (never to be logged)."""
        return ()

    # -------------------------------------------------------------- fixtures

    @pytest.fixture
    def sleep(self) -> RecordingSleep:
        """Waits requested during the test."""
        return RecordingSleep()

    @pytest.fixture
    def destination(
        self, fake: Any, sleep: RecordingSleep, tmp_path: Path
    ) -> Iterator[Destination]:
        """The destination under test, with a context like a run's."""

        def http(**arguments: Any) -> HttpClient:
            rate = arguments.pop("rate", None)
            if rate is not None:
                limiter = RateLimiter(
                    rate.requests, rate.per_seconds, sleep.clock, sleep
                )
                arguments.setdefault("rate_limiter", limiter)
            arguments.setdefault("policy", RetryPolicy(attempts=3, base_delay=0.01))
            arguments.setdefault("sleep", sleep)
            return HttpClient("contract", **arguments)

        context = DestinationContext(
            name="contract",
            base_dir=tmp_path,
            logger=logging.getLogger("pqlhub.plugins.contract"),
            http_factory=http,
        )
        destination = self.make_destination(fake, context)
        yield destination
        destination.close()

    # ----------------------------------------------------------------- steps

    def enter(self, destination: Destination, contacts: Sequence[str]) -> list[Outcome]:
        """Send enters of `contacts` into the contract's segment."""
        changes = make_changes(contacts, self.segment, "enter")
        batch = Batch("contract", self.enter_action, self.enter_options, changes)
        return apply_batch(destination, batch) or []

    def exit(self, destination: Destination, contacts: Sequence[str]) -> list[Outcome]:
        """Send exits of `contacts` from the contract's segment."""
        assert self.exit_action is not None
        changes = make_changes(contacts, self.segment, "exit")
        batch = Batch("contract", self.exit_action, self.exit_options, changes)
        return apply_batch(destination, batch) or []

    def held(self, fake: Any) -> set[str]:
        """The contacts the fake holds in the contract's segment."""
        return {contact for segment, contact in fake.members if segment == self.segment}

    # ----------------------------------------------------------------- tests

    def test_contract_enter_then_exit_round_trip(
        self, destination: Destination, fake: Any
    ) -> None:
        outcomes = self.enter(destination, self.contacts)

        assert _statuses(outcomes) == {OutcomeStatus.DONE}
        assert self.held(fake) == set(self.contacts)
        if self.exit_action is None:
            return
        outcomes = self.exit(destination, self.contacts[:2])
        assert _statuses(outcomes) <= {OutcomeStatus.DONE, OutcomeStatus.SKIPPED}
        assert self.held(fake) == set(self.contacts[2:])

    def test_contract_resend_is_idempotent(
        self, destination: Destination, fake: Any
    ) -> None:
        self.enter(destination, self.contacts)
        before = set(fake.members)

        outcomes = self.enter(destination, self.contacts)

        assert _statuses(outcomes) <= {OutcomeStatus.DONE, OutcomeStatus.SKIPPED}
        assert set(fake.members) == before


class RemoteDestinationContract(DestinationContract):
    """The contract of a destination behind an API: the tests above, and these.

    The fake must also honour `fail_next`, `reject` and `expire`.
    """

    def test_contract_one_bad_record_fails_alone(
        self, destination: Destination, fake: Any
    ) -> None:
        bad = self.contacts[2]
        fake.reject([bad])

        outcomes = self.enter(destination, self.contacts)

        failed = [o for o in outcomes if o.status is OutcomeStatus.FAILED]
        assert len(outcomes) == len(self.contacts)
        assert len(failed) == 1
        assert failed[0].kind is FailureKind.DATA
        assert self.held(fake) == set(self.contacts) - {bad}

    def test_contract_retry_after_is_honoured(
        self, destination: Destination, fake: Any, sleep: RecordingSleep
    ) -> None:
        fake.fail_next(429, retry_after=7)

        outcomes = self.enter(destination, self.contacts)

        assert _statuses(outcomes) == {OutcomeStatus.DONE}
        assert any(wait >= 7 for wait in sleep.waits), sleep.waits

    def test_contract_unauthorised_stops_the_sync(
        self, destination: Destination, fake: Any
    ) -> None:
        fake.expire()

        with pytest.raises(FatalSyncError, match="401"):
            self.enter(destination, self.contacts)

    def test_contract_no_secret_in_any_log_line(
        self,
        destination: Destination,
        fake: Any,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="pqlhub")
        fake.fail_next(500)
        self.enter(destination, self.contacts)
        fake.expire()
        with pytest.raises(FatalSyncError) as refused:
            self.enter(destination, self.contacts)

        texts = [record.getMessage() for record in caplog.records]
        texts.append(str(refused.value))
        assert texts, "the destination logged nothing"
        for secret in self.secrets(fake):
            assert all(secret not in text for text in texts), secret


def _statuses(outcomes: Sequence[Outcome]) -> set[OutcomeStatus]:
    return {outcome.status for outcome in outcomes}
