"""Running a recipe's sources: building each one, reading it, counting, keeping rejects.

The source stage yields records only. Malformed records that a block's `on_error =
"skip"` lets through are written, with their file, line and reason, to a JSON-lines
file per source in the rejects folder beside the ledger, so that nothing is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import orjson

from pqlhub.connectors import Checkpoint, Record, RejectSink, Source, SourceContext
from pqlhub.recipe import Recipe, SourceBlock

__all__ = ["FileRejects", "ReadProgress", "ReadReport", "SourceReader"]


ReadProgress = Callable[[str, int, bool], None]
"""Called as `progress(source, records_so_far, finished)` while a source is read."""

PROGRESS_EVERY: Final = 50_000


class FileRejects(RejectSink):
    """Appends rejected records to a JSON-lines file, created on the first reject."""

    def __init__(self, path: Path, source: str) -> None:
        self.path = path
        self.source = source
        self.count = 0
        self._handle: IO[bytes] | None = None
        self._stamp = datetime.now(UTC).isoformat(timespec="seconds")

    def reject(self, file: str, line: int | None, reason: str, raw: str) -> None:
        """Keep one bad record in the rejects file."""
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("ab")
        entry = {
            "rejected_at": self._stamp,
            "source": self.source,
            "file": file,
            "line": line,
            "reason": reason,
            "raw": raw,
        }
        self._handle.write(orjson.dumps(entry) + b"\n")
        self.count += 1

    def close(self) -> None:
        """Flush and close the file, if one was opened."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


@dataclass(frozen=True)
class ReadReport:
    """What reading one source block produced.

    Attributes:
        source: The block's name.
        entity: What its records describe.
        records: Good records read.
        skipped: Malformed records skipped (and kept in `rejects`).
        rejects: The rejects file, when anything was skipped.
    """

    source: str
    entity: str
    records: int
    skipped: int
    rejects: Path | None

    def as_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready values."""
        return {
            "source": self.source,
            "entity": self.entity,
            "records": self.records,
            "skipped": self.skipped,
            "rejects": str(self.rejects) if self.rejects else None,
        }


class SourceReader:
    """Reads one source block, counting what it yields.

    `fields`, when given, tells the source which record fields the recipe reads;
    `progress`, when given, is called every 50,000 records and once at the end.

    Use it as a context manager so the rejects file is closed even when reading
    stops with an error.
    """

    def __init__(
        self,
        recipe: Recipe,
        block: SourceBlock,
        fields: frozenset[str] | None = None,
        progress: ReadProgress | None = None,
    ) -> None:
        self.block = block
        self.progress = progress
        self.rejects = FileRejects(
            recipe.rejects_dir / f"{block.name}.jsonl", block.name
        )
        self.context = SourceContext(
            name=block.name,
            entity=block.entity,
            key=block.key,
            base_dir=recipe.base_dir,
            on_error=block.on_error,
            rejects=self.rejects,
            logger=logging.getLogger(f"pqlhub.plugins.{block.plugin}.{block.name}"),
            fields=fields,
        )
        self.source: Source = block.connector(block.config, self.context)
        self.records = 0
        self.checkpoint: Checkpoint | None = None

    def __enter__(self) -> SourceReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.rejects.close()

    def records_of(self, cursor: Any = None) -> Iterator[Record]:
        """Yield the block's records, remembering the last checkpoint seen."""
        if self.progress is not None:
            return self._reported(self._records(cursor), self.progress)
        return self._records(cursor)

    def _records(self, cursor: Any) -> Iterator[Record]:
        count = 0
        checkpoint = Checkpoint
        try:
            for item in self.source.read(cursor):
                if item.__class__ is checkpoint:
                    self.checkpoint = item
                    continue
                count += 1
                yield item  # type: ignore[misc]
        finally:
            self.records += count

    def _reported(
        self, records: Iterator[Record], progress: ReadProgress
    ) -> Iterator[Record]:
        name = self.block.name
        for count, record in enumerate(records, 1):
            if not count % PROGRESS_EVERY:
                progress(name, count, False)
            yield record
        progress(name, self.records, True)

    def report(self) -> ReadReport:
        """Return what was read so far."""
        return ReadReport(
            source=self.block.name,
            entity=self.block.entity,
            records=self.records,
            skipped=self.context.skipped,
            rejects=self.rejects.path if self.rejects.count else None,
        )
