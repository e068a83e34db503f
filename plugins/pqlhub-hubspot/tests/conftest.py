"""Shared for the HubSpot tests: fakes that fail the test on any OpenAPI mismatch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pqlhub_hubspot.fake import FakeHubSpot

MakeFake = Callable[..., FakeHubSpot]


def checked_fakes(**defaults: Any) -> Iterator[MakeFake]:
    """Yield a starter of fakes; afterwards stop them and fail on any violation.

    Use it as the body of a fixture: `yield from checked_fakes(tokens=...)`.
    """
    started: list[FakeHubSpot] = []

    def make(**options: Any) -> FakeHubSpot:
        hub = FakeHubSpot(**{**defaults, **options})
        assert hub.validating, (
            "HubSpot's OpenAPI files were not found; set PQLHUB_HUBSPOT_SPECS to "
            "the folder holding them (shared/specs/hubspot)."
        )
        hub.start()
        started.append(hub)
        return hub

    yield make
    for hub in started:
        hub.stop()
    for hub in started:
        assert hub.violations == []
