"""The segment-files source: Segment-spec calls read from JSON-lines files."""

from __future__ import annotations

import codecs
import glob
import gzip
import io
import json
import zlib
from collections import deque
from collections.abc import Generator, Iterator, Mapping
from datetime import UTC, datetime
from importlib import resources
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar

import orjson

from pqlhub import (
    Checkpoint,
    CheckResult,
    DataError,
    PluginError,
    Record,
    Source,
    SourceCapabilities,
    SourceContext,
)

__all__ = ["CALL_TYPES", "DEFAULT_TYPES", "SegmentFilesSource"]

CALL_TYPES = ("track", "identify", "group", "page", "screen", "alias")
"""Every call type of the Segment spec, the usually most frequent first."""

DEFAULT_TYPES = ("track", "identify", "group")
"""The call types yielded when the config does not list `types`."""

TIME_FALLBACKS = ("originalTimestamp", "sentAt", "receivedAt")
"""Where a call's time is looked for, in order, when it has no `timestamp`."""

_BUFFER_SIZE = 1 << 20

# A gzip member cut short ends in EOFError; damaged bytes give BadGzipFile (an
# OSError) or zlib.error. Only these are caught, so that other OS errors (a
# rejects file that cannot be written, say) are not mistaken for a bad file.
_GZIP_FAULTS = (EOFError, gzip.BadGzipFile, zlib.error)

# Stands in for an absent `properties` or `traits`, which is as good as `{}`.
_NO_OBJECT: dict[str, Any] = {}

_JSON_TYPES: Mapping[type, str] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _load_schema() -> Mapping[str, Any]:
    text = resources.files(__package__).joinpath("segment_files.schema.json")
    schema: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return schema


class SegmentFilesSource(Source):
    """Reads Segment-spec calls (track, identify, group, ...) from JSON-lines files.

    Each non-blank line of each file is one call; calls of a type the config's
    `types` does not list are passed over. A good call is yielded as the
    decoded JSON object, a dict, unchanged but for `timestamp`, which becomes an
    aware `datetime` (UTC when the text has no offset). A call without a
    `timestamp` takes its time from `originalTimestamp`, `sentAt` or
    `receivedAt`, the first present, and still yields it as `timestamp`.

    A call is bad, and goes to the block's `on_error`, when its line is not a
    UTF-8 JSON object, its `type` is not a Segment call type, it has no
    non-empty `userId` or `anonymousId`, its time is missing or not ISO 8601, or
    its type's own fields are wrong: a track needs an `event` name, a group a
    `groupId`, and `properties` and `traits` must be objects.

    After each file the source yields a checkpoint whose cursor maps every file
    read so far (relative to the recipe's folder) to the lines read from it.
    Reading from that cursor passes over those first lines, so a later run reads
    only what was appended since. Files must therefore only ever grow, by whole
    lines, which is how event exports are written.
    """

    name: ClassVar[str] = "segment-files"
    config_schema: ClassVar[Mapping[str, Any]] = _load_schema()
    capabilities: ClassVar[SourceCapabilities] = SourceCapabilities(
        entities=frozenset({"event"}), incremental=True, ordered=True
    )

    def __init__(self, config: Mapping[str, Any], context: SourceContext) -> None:
        super().__init__(config, context)
        self.path: str = config["path"]
        wanted = set(config.get("types", DEFAULT_TYPES))
        # A tuple, not a set: the per-line test then compares the `type` string
        # with a constant instead of hashing it, several times faster as measured.
        self.types = tuple(call for call in CALL_TYPES if call in wanted)

    def read(self, cursor: Any = None) -> Iterator[Record | Checkpoint]:
        """Yield the calls of every file in sorted order, with a checkpoint per file.

        Args:
            cursor: A cursor this source checkpointed, or None to read everything.

        Raises:
            DataError: When no file matches `path`, a file cannot be opened, or a
                line is bad and the block's `on_error` is `fail`.
            PluginError: When the cursor is not one this source wrote.
        """
        done = self._lines_done(cursor)
        progress: dict[str, int] = {}
        for path in self._files():
            file = self._file_name(path)
            lines = done.get(file, 0)
            with _open(path, file) as handle:
                if self._pass_over(handle, file, lines):
                    lines = yield from self._records(handle, file, lines)
            progress[file] = lines
            yield Checkpoint({"files": dict(progress)})

    def check(self) -> list[CheckResult]:
        """Verify that `path` matches at least one file."""
        try:
            files = self._files()
        except DataError as exc:
            return [CheckResult("files", False, exc.reason)]
        noun = "file matches" if len(files) == 1 else "files match"
        return [CheckResult("files", True, f"{len(files)} {noun} {self.path!r}.")]

    # ------------------------------------------------------------------ files

    def _files(self) -> list[Path]:
        resolved = self.context.resolve(self.path)
        if resolved.is_file():
            return [resolved]
        matches = sorted(glob.glob(str(resolved), recursive=True))
        files = [Path(match) for match in matches if Path(match).is_file()]
        if not files:
            reason = f"No file matches {self.path!r} (looked in {resolved.parent})."
            raise DataError(self.path, None, reason)
        return files

    def _file_name(self, path: Path) -> str:
        base = self.context.base_dir
        shown = path.relative_to(base) if path.is_relative_to(base) else path
        return shown.as_posix()

    def _lines_done(self, cursor: Any) -> dict[str, int]:
        if cursor is None:
            return {}
        files = cursor.get("files") if isinstance(cursor, dict) else None
        if isinstance(files, dict) and all(
            isinstance(count, int) and count >= 0 for count in files.values()
        ):
            return files
        raise PluginError(
            f"Source {self.context.name!r} cannot resume from the cursor {cursor!r}:"
            " it expected {'files': {<file>: <lines read>, ...}}."
        )

    def _pass_over(self, handle: io.BufferedReader, file: str, count: int) -> bool:
        """Pass over a byte-order mark and the first `count` lines.

        Returns:
            Whether the file had that many lines, so that reading goes on.
        """
        # TODO: keep byte offsets in the cursor so that plain files can seek past
        # what was read; counting lines again is simple and works for gzip too.
        try:
            if handle.peek(3).startswith(codecs.BOM_UTF8):
                handle.read(3)
            tail = deque(enumerate(islice(handle, count), 1), maxlen=1)
        except _GZIP_FAULTS as exc:
            self._gzip_fault(file, None if count else 1, exc)
            return False
        found = tail[0][0] if tail else 0
        if found < count:
            self.context.logger.warning(
                "File %s has %d lines, fewer than the %d read before; it is not"
                " read again until it grows past them.",
                file,
                found,
                count,
            )
        return found == count

    # ------------------------------------------------------------------ lines

    def _records(
        self, handle: io.BufferedReader, file: str, skip: int
    ) -> Generator[Record, None, int]:
        """Yield the good calls of the file's lines after `skip`; return the last line.

        Every event passes through this loop, so it is deliberately one flat
        function: fields are checked with inline lookups, and only a bad line
        calls out to build its reason.
        """
        loads = orjson.loads
        parse_time = datetime.fromisoformat
        types = self.types
        bad = self._bad
        no_object = _NO_OBJECT
        skipped = self.context.skipped
        # Events sorted by time often share a second; reuse the parsed value.
        last_text: object = object()
        last_time = datetime.min
        number = skip
        try:
            for number, line in enumerate(handle, skip + 1):
                try:
                    record = loads(line)
                except orjson.JSONDecodeError as exc:
                    if line.strip():
                        bad(file, number, line, _syntax_problem(line, exc))
                    continue

                try:
                    call = record.get("type")
                except AttributeError:
                    bad(file, number, line, _not_an_object(record))
                    continue
                if call not in types:
                    if call not in CALL_TYPES:
                        bad(file, number, line, _type_problem(call))
                    continue
                user = record.get("userId")
                if user.__class__ is not str or not user:
                    reason = _identity_problem(call, user, record.get("anonymousId"))
                    if reason:
                        bad(file, number, line, reason)
                        continue

                if call == "track":
                    event = record.get("event")
                    if event.__class__ is not str or not event:
                        bad(file, number, line, "A track call needs an 'event' name.")
                        continue
                    if record.get("properties", no_object).__class__ is not dict:
                        bad(file, number, line, _object_problem(record, "properties"))
                        continue
                elif call == "identify":
                    if record.get("traits", no_object).__class__ is not dict:
                        bad(file, number, line, _object_problem(record, "traits"))
                        continue
                elif call == "group":
                    group = record.get("groupId")
                    if group.__class__ is not str or not group:
                        bad(file, number, line, "A group call needs a 'groupId'.")
                        continue
                    if record.get("traits", no_object).__class__ is not dict:
                        bad(file, number, line, _object_problem(record, "traits"))
                        continue

                text = record.get("timestamp")
                if text != last_text:
                    if text is None:
                        text = _fallback_time(record)
                    try:
                        when = parse_time(text)
                    except (TypeError, ValueError):
                        bad(file, number, line, _time_problem(record, call))
                        continue
                    last_text = text
                    if when.tzinfo is None:
                        when = when.replace(tzinfo=UTC)
                    last_time = when
                record["timestamp"] = last_time
                yield record
        except _GZIP_FAULTS as exc:
            self._gzip_fault(file, number + 1, exc)
        self.context.logger.info(
            "Read %d new lines of %s, up to line %d (%d bad lines skipped).",
            number - skip,
            file,
            number,
            self.context.skipped - skipped,
        )
        return number

    def _bad(self, file: str, line: int, text: bytes, reason: str) -> None:
        raw = text.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
        self.context.bad_record(file, line, reason, raw)

    def _gzip_fault(self, file: str, line: int | None, exc: Exception) -> None:
        if line is None:
            reason = (
                f"The gzip data is damaged among the lines read before ({exc}),"
                " so no new line was read."
            )
        else:
            reason = (
                f"The gzip data is damaged from line {line} on ({exc}),"
                " so the rest of the file was not read."
            )
        self.context.bad_record(file, line, reason, "")


def _open(path: Path, file: str) -> io.BufferedReader:
    try:
        if path.name.endswith(".gz"):
            # BufferedReader splits lines in C; GzipFile's own iteration does not.
            return io.BufferedReader(gzip.GzipFile(path, "rb"), _BUFFER_SIZE)
        return io.BufferedReader(io.FileIO(path, "rb"), _BUFFER_SIZE)
    except OSError as exc:
        raise DataError(
            file, None, f"File cannot be opened: {exc.strerror or exc}."
        ) from exc


# ------------------------------------------------------------- bad-line reasons


def _syntax_problem(line: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as error:
        byte, column = line[error.start], error.start + 1
        return f"Line is not valid UTF-8: byte 0x{byte:02x} at column {column}."
    return f"Line is not valid JSON: {exc.msg} at column {exc.colno}."


def _not_an_object(value: object) -> str:
    return f"Line holds {_JSON_TYPES[type(value)]}, not a JSON object."


def _type_problem(call: object) -> str:
    if call is None:
        return "A call needs a 'type'."
    if call.__class__ is not str:
        return f"A call's 'type' must be a string, not {_JSON_TYPES[type(call)]}."
    known = ", ".join(CALL_TYPES)
    return f"Call type {_shown(call)} is not one of the Segment call types: {known}."


def _identity_problem(call: str, user: object, anonymous: object) -> str | None:
    if user is not None and user.__class__ is not str:
        kind = _JSON_TYPES[type(user)]
        return f"{_a_call(call)}'s 'userId' must be a string, not {kind}."
    if anonymous.__class__ is str and anonymous:
        return None
    return f"{_a_call(call)} needs a 'userId' or an 'anonymousId' (a non-empty string)."


def _object_problem(record: Record, key: str) -> str:
    kind = _JSON_TYPES[type(record[key])]
    return f"{_a_call(record['type'])}'s {key!r} must be an object, not {kind}."


def _fallback_time(record: Record) -> Any:
    for key in TIME_FALLBACKS:
        text = record.get(key)
        if text is not None:
            return text
    return None


def _time_problem(record: Record, call: str) -> str:
    for key in ("timestamp", *TIME_FALLBACKS):
        value = record.get(key)
        if value is not None:
            where = "" if key == "timestamp" else f" (from {key!r})"
            return f"Timestamp {_shown(value)}{where} is not an ISO 8601 time."
    return (
        f"{_a_call(call)} needs a 'timestamp' (or an 'originalTimestamp', 'sentAt'"
        " or 'receivedAt')."
    )


def _a_call(call: str) -> str:
    return f"{'An' if call[0] in 'aeiou' else 'A'} {call} call"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
