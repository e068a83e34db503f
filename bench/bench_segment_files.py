"""Measure how many lines a second the segment-files source reads.

It writes synthetic track calls to a temporary JSON-lines file, reads them back
through `SegmentFilesSource` with a context that keeps nothing, and prints the rate.

Usage::

    python plugins/pqlhub-analytics/bench_segment_files.py --lines 1000000 [--gzip]
"""

from __future__ import annotations

import argparse
import gzip
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from pqlhub import Checkpoint, RejectSink, SourceContext
from pqlhub_analytics import SegmentFilesSource

ENDPOINTS = ("/v1/projects", "/v1/deployments", "/v1/builds/{id}", "/v1/usage")
CHUNK = 10_000


class DiscardRejects(RejectSink):
    """Forgets every rejected record; the benchmark's data has none."""

    def reject(self, file: str, line: int | None, reason: str, raw: str) -> None:
        """Drop the record."""


def track_line(number: int) -> bytes:
    """Return one synthetic track call, about 180 bytes of JSON with its newline."""
    second = number * 37  # a new second for every call: no two times repeat
    call = {
        "type": "track",
        "messageId": f"m{number:x}",
        "userId": f"u-{number * 7919 % 40_000:05d}",
        "event": "api_call",
        "timestamp": (
            f"2026-{1 + second // 2_592_000 % 12:02d}-{1 + second // 86_400 % 28:02d}"
            f"T{second // 3600 % 24:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"
        ),
        "properties": {"endpoint": ENDPOINTS[number % 4], "status": 200},
    }
    return orjson.dumps(call, option=orjson.OPT_APPEND_NEWLINE)


def write_lines(path: Path, count: int, compress: bool) -> None:
    """Write `count` track calls to `path`, gzip-compressed when asked."""
    with gzip.open(path, "wb") if compress else path.open("wb") as out:
        for start in range(0, count, CHUNK):
            stop = min(start + CHUNK, count)
            out.write(b"".join(track_line(n) for n in range(start, stop)))


def read_all(folder: Path, pattern: str) -> tuple[int, float]:
    """Read every record of `pattern`; return how many, and the seconds it took."""
    context = SourceContext(
        name="bench",
        entity="event",
        key=None,
        base_dir=folder,
        on_error="fail",
        rejects=DiscardRejects(),
        logger=logging.getLogger("pqlhub.plugins.bench"),
    )
    source = SegmentFilesSource({"path": pattern}, context)
    records = 0
    started = time.perf_counter()
    for item in source.read():
        if not isinstance(item, Checkpoint):
            records += 1
    return records, time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the rate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--gzip", action="store_true", help="compress the file")
    parser.add_argument("--repeat", type=int, default=3, help="reads to time")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        name = "events.jsonl.gz" if args.gzip else "events.jsonl"
        write_lines(folder / name, args.lines, args.gzip)
        size = (folder / name).stat().st_size
        best = min(read_all(folder, name)[1] for _ in range(args.repeat))

    print(
        f"{args.lines:,} lines ({size / 1e6:.0f} MB{' gzip' if args.gzip else ''})"
        f" in {best:.2f} s, best of {args.repeat}: {args.lines / best:,.0f} lines/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
