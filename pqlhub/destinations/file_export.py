"""The file export: segment membership as a CSV or JSON-lines file.

In `snapshot` mode (the default) the file always holds the current members of the
syncs that write to it, one row per sync, segment and contact, with the mapped
fields: the spreadsheet route many teams start with. Each batch rewrites the file
atomically (a temporary file renamed over it), so a reader never sees half a file.
In `log` mode every change is appended as one JSON line instead, with its stable id.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Final

import orjson

from pqlhub.connectors import (
    Action,
    Batch,
    CheckResult,
    Destination,
    DestinationContext,
    Limits,
    Outcome,
)
from pqlhub.destinations.events import change_event
from pqlhub.errors import FatalSyncError

__all__ = ["FileExport"]

_KEY_COLUMNS: Final = ("sync", "segment", "contact")

Row = tuple[str, str, str]


class FileExport(Destination):
    """Writes segment membership to a CSV or JSON-lines file."""

    name = "file"
    config_schema: ClassVar[Mapping[str, Any]] = {
        "type": "object",
        "properties": {
            "path": {
                "type": "string",
                "minLength": 1,
                "description": "The file to write, relative to the recipe.",
            },
            "format": {
                "enum": ["csv", "jsonl"],
                "description": "Defaults to the file's extension (.csv or .jsonl).",
            },
            "mode": {
                "enum": ["snapshot", "log"],
                "default": "snapshot",
                "description": "Keep the current members (snapshot) or append "
                "every change (log, JSON lines only).",
            },
        },
        "required": ["path"],
        "additionalProperties": False,
        "if": {"properties": {"mode": {"const": "log"}}, "required": ["mode"]},
        "then": {
            "properties": {
                "path": {
                    "pattern": "\\.(jsonl|ndjson)$",
                    "description": "A log is JSON lines: a .jsonl or .ndjson file.",
                },
                "format": {"const": "jsonl"},
            }
        },
    }
    actions: ClassVar[Mapping[str, Action]] = {
        "add": Action(
            "add", "Add the contact's row for the segment.", frozenset({"enter"})
        ),
        "remove": Action("remove", "Remove the contact's row.", frozenset({"exit"})),
    }
    limits: ClassVar[Limits] = Limits(batch_size=5000, concurrency=1)

    def __init__(self, config: Mapping[str, Any], context: DestinationContext) -> None:
        super().__init__(config, context)
        self.path = (context.base_dir / config["path"]).resolve()
        self.mode = config.get("mode", "snapshot")
        self.format = config.get("format") or _format_of(self.path)
        if self.mode == "log" and self.format != "jsonl":
            msg = f"The file export {context.name!r} in log mode writes JSON lines."
            raise FatalSyncError(msg)
        self._rows: dict[Row, dict[str, Any]] | None = None

    def apply(self, batch: Batch) -> Sequence[Outcome]:
        """Apply the batch to the file and confirm every change."""
        if self.mode == "log":
            self._append(batch)
        else:
            rows = self._load()
            for change in batch.changes:
                key = (batch.sync, change.segment, change.key)
                if change.kind == "exit":
                    rows.pop(key, None)
                else:
                    rows[key] = dict(change.fields)
            self._write(rows)
        return [Outcome.done(change) for change in batch.changes]

    def check(self) -> list[CheckResult]:
        """Check that the file's folder exists and can be written."""
        folder = self.path.parent
        writable = folder.is_dir() and os.access(folder, os.W_OK)
        message = (
            f"{folder} is writable."
            if writable
            else f"{folder} does not exist or cannot be written; create it first."
        )
        return [CheckResult("folder writable", writable, message)]

    # --------------------------------------------------------------- snapshot

    def _load(self) -> dict[Row, dict[str, Any]]:
        if self._rows is None:
            self._rows = self._read() if self.path.exists() else {}
        return self._rows

    def _read(self) -> dict[Row, dict[str, Any]]:
        rows: dict[Row, dict[str, Any]] = {}
        text = self.path.read_text(encoding="utf-8")
        if self.format == "jsonl":
            for line in text.splitlines():
                if line.strip():
                    entry = orjson.loads(line)
                    rows[(entry["sync"], entry["segment"], entry["contact"])] = entry[
                        "fields"
                    ]
            return rows
        for entry in csv.DictReader(io.StringIO(text)):
            key = (entry.pop("sync"), entry.pop("segment"), entry.pop("contact"))
            rows[key] = {name: value for name, value in entry.items() if value != ""}
        return rows

    def _write(self, rows: Mapping[Row, Mapping[str, Any]]) -> None:
        ordered = sorted(rows.items())
        if self.format == "jsonl":
            data = b"".join(
                orjson.dumps(
                    {"sync": s, "segment": g, "contact": c, "fields": dict(f)},
                    default=str,
                )
                + b"\n"
                for (s, g, c), f in ordered
            )
        else:
            data = _csv(ordered).encode("utf-8")
        _replace_atomically(self.path, data)

    # -------------------------------------------------------------------- log

    def _append(self, batch: Batch) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        lines = b"".join(
            orjson.dumps(
                change_event(batch.sync, change, written_at=stamp), default=str
            )
            + b"\n"
            for change in batch.changes
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())


def _csv(rows: Sequence[tuple[Row, Mapping[str, Any]]]) -> str:
    names = sorted({name for _, fields in rows for name in fields})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*_KEY_COLUMNS, *names])
    for key, fields in rows:
        writer.writerow([*key, *(_cell(fields.get(name)) for name in names)])
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ";".join(str(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _format_of(path: Path) -> str:
    return "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv"


def _replace_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
