"""The JSON shape of a membership change, shared by the webhook and the file log."""

from __future__ import annotations

from typing import Any, Final

from pqlhub.connectors import Change

__all__ = ["EVENT_TYPES", "change_event"]

EVENT_TYPES: Final = {
    "enter": "segment.entered",
    "exit": "segment.exited",
    "update": "segment.updated",
}
"""The event `type` of each kind of change."""


def change_event(sync: str, change: Change, **stamps: str) -> dict[str, Any]:
    """Return a change as an event object.

    Args:
        sync: The sync's name.
        change: The change.
        **stamps: Times to add, such as `sent_at` or `written_at`.
    """
    return {
        "id": change.id,
        "type": EVENT_TYPES[change.kind],
        "sync": sync,
        "segment": change.segment,
        "contact": change.key,
        "fields": dict(change.fields),
        **stamps,
    }
