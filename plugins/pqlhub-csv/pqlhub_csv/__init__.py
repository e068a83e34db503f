"""pqlhub-csv: a pqlhub source that reads contacts, accounts and events from CSV files.

Installed, it registers the source `csv` through the `pqlhub` entry-point group; a
recipe then uses it with `plugin = "csv"` in a `[sources.*]` block.
"""

from __future__ import annotations

from collections.abc import Sequence

from pqlhub import Source, hookimpl
from pqlhub_csv.source import CsvSource

__all__ = ["CsvSource", "pqlhub_source_types"]

__version__ = "0.1.0"


@hookimpl
def pqlhub_source_types() -> Sequence[type[Source]]:
    """Register the CSV source."""
    return [CsvSource]
