"""Helpers for testing a source plugin: a rejects sink that keeps what it is given."""

from __future__ import annotations

from dataclasses import dataclass

from pqlhub.connectors import RejectSink

__all__ = ["KeptRejects", "Reject"]


@dataclass(frozen=True)
class Reject:
    """One bad record a source handed to the rejects sink."""

    file: str
    line: int | None
    reason: str
    raw: str


class KeptRejects(RejectSink):
    """A rejects sink that keeps every record it is given, for a test to inspect.

    Pass it as the `rejects` of a `SourceContext` with `on_error="skip"`, read
    the source, then look at `kept`.
    """

    def __init__(self) -> None:
        self.kept: list[Reject] = []

    def reject(self, file: str, line: int | None, reason: str, raw: str) -> None:
        """Keep one bad record."""
        self.kept.append(Reject(file, line, reason, raw))
