"""The built-in segment-rule types, registered through the same hook as plugins'."""

from __future__ import annotations

from collections.abc import Sequence

from pqlhub.connectors import RuleType
from pqlhub.hookspecs import hookimpl


@hookimpl
def pqlhub_rule_types() -> Sequence[type[RuleType]]:
    """Register the built-in rule types."""
    return []
