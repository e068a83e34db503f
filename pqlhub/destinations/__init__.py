"""The built-in destinations that need no vendor: a file export and a webhook."""

from __future__ import annotations

from collections.abc import Sequence

from pqlhub.connectors import Destination
from pqlhub.destinations.file_export import FileExport
from pqlhub.destinations.webhook import Webhook
from pqlhub.hookspecs import hookimpl

__all__ = ["FileExport", "Webhook"]


@hookimpl
def pqlhub_destination_types() -> Sequence[type[Destination]]:
    """Register the built-in destinations."""
    return [FileExport, Webhook]
