"""pqlhub's kit for plugin authors: fake servers, contract suites and test helpers.

It is also a pytest plugin (registered through the `pytest11` entry point), which
offers the fixtures `webhook_receiver` (a running `WebhookReceiver`) and
`recording_sleep` (a `RecordingSleep`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pqlhub.testing.contract import (
    ContractFake,
    DestinationContract,
    RecordingSleep,
    RemoteDestinationContract,
    make_changes,
)
from pqlhub.testing.receiver import Fault, WebhookReceiver
from pqlhub.testing.sources import KeptRejects, Reject

__all__ = [
    "ContractFake",
    "DestinationContract",
    "Fault",
    "KeptRejects",
    "RecordingSleep",
    "Reject",
    "RemoteDestinationContract",
    "WebhookReceiver",
    "make_changes",
]


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A webhook receiver listening on loopback for the test's duration."""
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def recording_sleep() -> RecordingSleep:
    """A sleep function that records waits instead of waiting."""
    return RecordingSleep()
