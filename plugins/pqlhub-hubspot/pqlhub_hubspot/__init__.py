"""pqlhub-hubspot: a pqlhub destination for HubSpot, and a fake HubSpot to test it.

Installed, it joins pqlhub through the `pqlhub` entry-point group and provides the
`hubspot` destination (`pqlhub_hubspot.destination.HubSpotDestination`). The fake
HubSpot (`pqlhub_hubspot.fake.FakeHubSpot`, or `python -m pqlhub_hubspot.fake`)
serves the same API on loopback for tests and trials.
"""

from __future__ import annotations

from collections.abc import Sequence

from pqlhub import Destination, hookimpl
from pqlhub_hubspot.destination import HubSpotDestination

__all__ = ["HubSpotDestination", "pqlhub_destination_types"]

__version__ = "0.1.0"


@hookimpl
def pqlhub_destination_types() -> Sequence[type[Destination]]:
    """Register the HubSpot destination."""
    return [HubSpotDestination]
