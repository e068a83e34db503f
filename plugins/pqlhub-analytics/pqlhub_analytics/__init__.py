"""pqlhub-analytics: pqlhub sources that read product analytics events.

Installed, it registers through the `pqlhub` entry-point group the source
`segment-files`, which a recipe uses with `plugin = "segment-files"` in a
`[sources.*]` block.
"""

from __future__ import annotations

from collections.abc import Sequence

from pqlhub import Source, hookimpl
from pqlhub_analytics.segment_files import SegmentFilesSource

__all__ = ["SegmentFilesSource", "pqlhub_source_types"]

__version__ = "0.1.0"


@hookimpl
def pqlhub_source_types() -> Sequence[type[Source]]:
    """Register the Segment event files source."""
    return [SegmentFilesSource]
