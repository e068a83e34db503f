"""The segment-files source, read through real files in a temporary folder."""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest

from pqlhub import (
    Checkpoint,
    DataError,
    PluginError,
    Record,
    SourceContext,
)
from pqlhub.testing import KeptRejects
from pqlhub_analytics import SegmentFilesSource

LOGGER = "pqlhub.plugins.analytics.test"
OMIT = object()
"""A field value that leaves the field out of the call."""

KIND_FIELDS: Mapping[str, Mapping[str, Any]] = {
    "track": {"event": "api_call", "properties": {"status": 200}},
    "identify": {"traits": {"plan": "pro"}},
    "group": {"groupId": "acme.com", "traits": {"employees": 50}},
    "page": {"name": "Pricing"},
    "screen": {"name": "Settings"},
    "alias": {"previousId": "anon-1"},
}


@dataclass
class Reader:
    """Builds sources over one folder and collects what they yield."""

    base_dir: Path
    rejects: KeptRejects
    context: SourceContext | None = None

    def source(
        self, on_error: Literal["fail", "skip"] = "fail", **config: Any
    ) -> SegmentFilesSource:
        self.context = SourceContext(
            name="events",
            entity="event",
            key=None,
            base_dir=self.base_dir,
            on_error=on_error,
            rejects=self.rejects,
            logger=logging.getLogger(LOGGER),
        )
        return SegmentFilesSource({"path": "*.jsonl*", **config}, self.context)

    def items(self, source: SegmentFilesSource, cursor: Any = None) -> list[Any]:
        return list(source.read(cursor))

    def records(self, source: SegmentFilesSource, cursor: Any = None) -> list[Record]:
        items = self.items(source, cursor)
        return [item for item in items if not isinstance(item, Checkpoint)]

    @property
    def skipped(self) -> int:
        assert self.context is not None
        return self.context.skipped


@pytest.fixture
def reader(tmp_path: Path) -> Reader:
    return Reader(tmp_path, KeptRejects())


def call(kind: str = "track", **fields: Any) -> dict[str, Any]:
    """Return a valid call of `kind`, with `fields` changed (OMIT removes one)."""
    base: dict[str, Any] = {
        "type": kind,
        "messageId": "m1",
        "userId": "u-1",
        "timestamp": "2024-05-01T09:30:00Z",
        **KIND_FIELDS[kind],
        **fields,
    }
    return {key: value for key, value in base.items() if value is not OMIT}


def encoded(line: Mapping[str, Any] | str | bytes) -> bytes:
    if isinstance(line, bytes):
        return line
    if isinstance(line, str):
        return line.encode()
    return orjson.dumps(line)


def write(path: Path, lines: Iterable[Mapping[str, Any] | str | bytes]) -> Path:
    """Write one line per item, gzip-compressed when the name ends in `.gz`."""
    data = b"".join(encoded(line) + b"\n" for line in lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def append(path: Path, lines: Iterable[Mapping[str, Any]]) -> None:
    data = b"".join(encoded(line) + b"\n" for line in lines)
    if path.name.endswith(".gz"):
        with gzip.open(path, "ab") as out:
            out.write(data)
    else:
        with path.open("ab") as out:
            out.write(data)


def ids(records: Iterable[Record]) -> list[str]:
    return [record["messageId"] for record in records]


def checkpoints(items: Iterable[Any]) -> list[Any]:
    return [item.cursor for item in items if isinstance(item, Checkpoint)]


# --------------------------------------------------------------------- records


@pytest.mark.parametrize(
    "name", ["events.jsonl", "events.jsonl.gz"], ids=["plain", "gzip"]
)
def test_read_yields_each_kind_with_a_datetime_timestamp(
    reader: Reader, name: str
) -> None:
    lines = [call("track"), call("identify"), call("group")]
    write(reader.base_dir / name, lines)

    records = reader.records(reader.source(path=name))

    expected_time = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    assert records == [{**line, "timestamp": expected_time} for line in lines]


def test_read_passes_other_fields_through(reader: Reader) -> None:
    line = call(context={"ip": "10.0.0.1", "library": {"name": "analytics.js"}})
    line["properties"] = {"endpoint": "/v1/é", "nested": [1, {"a": None}]}
    write(reader.base_dir / "events.jsonl", [line])

    (record,) = reader.records(reader.source())

    assert record["context"] == line["context"]
    assert record["properties"] == line["properties"]
    assert record["messageId"] == "m1"


def test_read_glob_files_in_sorted_order(reader: Reader) -> None:
    base = reader.base_dir / "data"
    write(base / "2024-05-02.jsonl", [call(messageId="b")])
    write(base / "2024-05-01.jsonl.gz", [call(messageId="a")])
    write(base / "late/2024-05-03.jsonl", [call(messageId="c")])
    write(base / "notes.txt", ["not an event file"])

    records = reader.records(reader.source(path="data/**/*.jsonl*"))

    assert ids(records) == ["a", "b", "c"]


def test_read_path_without_a_match_raises(reader: Reader) -> None:
    source = reader.source(path="data/*.jsonl")

    with pytest.raises(DataError, match=r"No file matches 'data/\*\.jsonl'") as info:
        reader.records(source)
    assert info.value.file == "data/*.jsonl"
    assert info.value.line is None


def test_read_blank_and_crlf_lines(reader: Reader) -> None:
    crlf = encoded(call(messageId="a")) + b"\r"
    lines: list[Mapping[str, Any] | bytes] = [b"", crlf, b"   ", call(messageId="b")]
    write(reader.base_dir / "events.jsonl", lines)

    records = reader.records(reader.source(on_error="fail"))

    assert ids(records) == ["a", "b"]
    assert reader.skipped == 0


def test_read_drops_a_byte_order_mark(reader: Reader) -> None:
    path = reader.base_dir / "events.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + encoded(call()) + b"\n")

    assert ids(reader.records(reader.source())) == ["m1"]


# ------------------------------------------------------------------ timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T09:30:00Z", datetime(2024, 5, 1, 9, 30, tzinfo=UTC)),
        ("2024-05-01T09:30:00.250Z", datetime(2024, 5, 1, 9, 30, 0, 250_000, UTC)),
        ("2024-05-01T11:30:00+02:00", datetime(2024, 5, 1, 9, 30, tzinfo=UTC)),
        ("2024-05-01T09:30:00", datetime(2024, 5, 1, 9, 30, tzinfo=UTC)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
    ],
    ids=["zulu", "fraction", "offset", "naive-is-utc", "date-only"],
)
def test_timestamp_parsed_to_aware_datetime(
    reader: Reader, text: str, expected: datetime
) -> None:
    write(reader.base_dir / "events.jsonl", [call(timestamp=text)])

    (record,) = reader.records(reader.source())

    assert record["timestamp"] == expected
    assert record["timestamp"].tzinfo is not None


def test_timestamp_keeps_its_offset(reader: Reader) -> None:
    write(reader.base_dir / "events.jsonl", [call(timestamp="2024-05-01T11:30+02:00")])

    (record,) = reader.records(reader.source())

    assert record["timestamp"].utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize(
    ("fields", "expected_hour"),
    [
        ({"originalTimestamp": "2024-05-01T01:00:00Z"}, 1),
        ({"sentAt": "2024-05-01T02:00:00Z"}, 2),
        ({"receivedAt": "2024-05-01T03:00:00Z"}, 3),
        ({"timestamp": None, "sentAt": "2024-05-01T02:00:00Z"}, 2),
        (
            {
                "originalTimestamp": "2024-05-01T01:00:00Z",
                "sentAt": "2024-05-01T02:00:00Z",
                "receivedAt": "2024-05-01T03:00:00Z",
            },
            1,
        ),
        ({"sentAt": "2024-05-01T02:00:00Z", "receivedAt": "2024-05-01T03:00Z"}, 2),
    ],
    ids=[
        "original",
        "sent",
        "received",
        "null-timestamp",
        "original-first",
        "sent-next",
    ],
)
def test_timestamp_falls_back_in_order(
    reader: Reader, fields: dict[str, Any], expected_hour: int
) -> None:
    line = {**call(timestamp=OMIT), **fields}
    write(reader.base_dir / "events.jsonl", [line])

    (record,) = reader.records(reader.source())

    assert record["timestamp"] == datetime(2024, 5, 1, expected_hour, tzinfo=UTC)
    for key, value in fields.items():
        if key != "timestamp":
            assert record[key] == value


def test_timestamp_repeated_and_changing(reader: Reader) -> None:
    texts = ["2024-05-01T09:00Z", "2024-05-01T09:00Z", "2024-05-01T10:00", "bad"]
    texts.append("2024-05-01T09:00Z")
    write(reader.base_dir / "events.jsonl", [call(timestamp=text) for text in texts])

    records = reader.records(reader.source(on_error="skip"))

    hours = [record["timestamp"].hour for record in records]
    assert hours == [9, 9, 10, 9]
    assert [reject.line for reject in reader.rejects.kept] == [4]


# ----------------------------------------------------------------------- types


def test_types_default_passes_over_page_screen_alias(reader: Reader) -> None:
    kinds = ["track", "page", "identify", "screen", "group", "alias"]
    lines = [call(kind, messageId=kind) for kind in kinds]
    lines.append(call("page", messageId="bad-page", userId=OMIT))
    write(reader.base_dir / "events.jsonl", lines)

    records = reader.records(reader.source(on_error="fail"))

    assert ids(records) == ["track", "identify", "group"]
    assert reader.skipped == 0


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        (["track"], ["track"]),
        (["page", "screen"], ["page", "screen"]),
        (["alias", "identify"], ["identify", "alias"]),
    ],
    ids=["track-only", "page-and-screen", "alias-and-identify"],
)
def test_types_listed_are_yielded(
    reader: Reader, types: list[str], expected: list[str]
) -> None:
    kinds = ["track", "page", "identify", "screen", "group", "alias"]
    lines = [call(kind, messageId=kind) for kind in kinds]
    write(reader.base_dir / "events.jsonl", lines)

    records = reader.records(reader.source(types=types))

    assert ids(records) == expected


def test_types_listed_are_checked(reader: Reader) -> None:
    write(reader.base_dir / "events.jsonl", [call("page", userId=OMIT)])
    source = reader.source(types=["page"])

    with pytest.raises(DataError, match="A page call needs a 'userId'"):
        reader.records(source)


# ------------------------------------------------------------------- bad lines

TIME_NEEDED = (
    "A track call needs a 'timestamp' (or an 'originalTimestamp', 'sentAt' or"
    " 'receivedAt')."
)

BAD_LINES = [
    pytest.param(
        b'{"type": "track" "event": 1}',
        r"Line is not valid JSON: .+ at column 18\.",
        id="not-json",
    ),
    pytest.param(
        b'{"type": "track", "event": "caf\xe9"}',
        re.escape("Line is not valid UTF-8: byte 0xe9 at column 32."),
        id="not-utf8",
    ),
    pytest.param(
        b"[1, 2]",
        re.escape("Line holds an array, not a JSON object."),
        id="array",
    ),
    pytest.param(
        b'"track"',
        re.escape("Line holds a string, not a JSON object."),
        id="string",
    ),
    pytest.param(
        call(type=OMIT),
        re.escape("A call needs a 'type'."),
        id="no-type",
    ),
    pytest.param(
        call(type=7),
        re.escape("A call's 'type' must be a string, not a number."),
        id="type-number",
    ),
    pytest.param(
        call(type=["track"]),
        re.escape("A call's 'type' must be a string, not an array."),
        id="type-array",
    ),
    pytest.param(
        call(type="trak"),
        re.escape(
            "Call type 'trak' is not one of the Segment call types: track, identify,"
            " group, page, screen, alias."
        ),
        id="type-unknown",
    ),
    pytest.param(
        call(userId=OMIT),
        re.escape(
            "A track call needs a 'userId' or an 'anonymousId' (a non-empty string)."
        ),
        id="no-user",
    ),
    pytest.param(
        call(userId="", anonymousId=""),
        re.escape(
            "A track call needs a 'userId' or an 'anonymousId' (a non-empty string)."
        ),
        id="empty-ids",
    ),
    pytest.param(
        call("identify", userId=None, anonymousId=12),
        re.escape(
            "An identify call needs a 'userId' or an 'anonymousId'"
            " (a non-empty string)."
        ),
        id="anonymous-number",
    ),
    pytest.param(
        call(userId=42, anonymousId="anon-1"),
        re.escape("A track call's 'userId' must be a string, not a number."),
        id="user-number",
    ),
    pytest.param(
        call(event=OMIT),
        re.escape("A track call needs an 'event' name."),
        id="track-no-event",
    ),
    pytest.param(
        call(event=""),
        re.escape("A track call needs an 'event' name."),
        id="track-empty-event",
    ),
    pytest.param(
        call(properties=["status"]),
        re.escape("A track call's 'properties' must be an object, not an array."),
        id="track-properties-array",
    ),
    pytest.param(
        call(properties=None),
        re.escape("A track call's 'properties' must be an object, not null."),
        id="track-properties-null",
    ),
    pytest.param(
        call("identify", traits="pro"),
        re.escape("An identify call's 'traits' must be an object, not a string."),
        id="identify-traits-string",
    ),
    pytest.param(
        call("group", groupId=OMIT),
        re.escape("A group call needs a 'groupId'."),
        id="group-no-id",
    ),
    pytest.param(
        call("group", groupId=3),
        re.escape("A group call needs a 'groupId'."),
        id="group-id-number",
    ),
    pytest.param(
        call("group", traits=True),
        re.escape("A group call's 'traits' must be an object, not a boolean."),
        id="group-traits-boolean",
    ),
    pytest.param(
        call(timestamp="yesterday"),
        re.escape("Timestamp 'yesterday' is not an ISO 8601 time."),
        id="time-text",
    ),
    pytest.param(
        call(timestamp=1714555800),
        re.escape("Timestamp 1714555800 is not an ISO 8601 time."),
        id="time-number",
    ),
    pytest.param(
        call(timestamp=OMIT, sentAt="soon"),
        re.escape("Timestamp 'soon' (from 'sentAt') is not an ISO 8601 time."),
        id="fallback-text",
    ),
    pytest.param(
        call(timestamp=OMIT),
        re.escape(TIME_NEEDED),
        id="no-time",
    ),
]


@pytest.mark.parametrize(("line", "reason"), BAD_LINES)
def test_bad_line_under_fail_raises(
    reader: Reader, line: Mapping[str, Any] | bytes, reason: str
) -> None:
    write(reader.base_dir / "events.jsonl", [call(), line, call()])
    source = reader.source(on_error="fail")

    with pytest.raises(DataError, match=f"^events.jsonl, line 2: {reason}$") as info:
        reader.records(source)
    assert (info.value.file, info.value.line) == ("events.jsonl", 2)
    assert re.fullmatch(reason, info.value.reason)


@pytest.mark.parametrize(("line", "reason"), BAD_LINES)
def test_bad_line_under_skip_is_kept(
    reader: Reader, line: Mapping[str, Any] | bytes, reason: str
) -> None:
    lines = [call(messageId="a"), line, call(messageId="b")]
    write(reader.base_dir / "events.jsonl", lines)

    records = reader.records(reader.source(on_error="skip"))

    assert ids(records) == ["a", "b"]
    assert reader.skipped == 1
    (reject,) = reader.rejects.kept
    assert (reject.file, reject.line) == ("events.jsonl", 2)
    assert re.fullmatch(reason, reject.reason)
    assert reject.raw == encoded(line).decode("utf-8", "backslashreplace")


def test_bad_line_raw_shows_bytes_that_are_not_utf8(reader: Reader) -> None:
    write(reader.base_dir / "events.jsonl", [b'{"event": "caf\xe9"}'])

    reader.records(reader.source(on_error="skip"))

    assert reader.rejects.kept[0].raw == '{"event": "caf\\xe9"}'


# ------------------------------------------------------------------------ gzip


def many_calls(count: int, prefix: str) -> list[dict[str, Any]]:
    return [call(messageId=f"{prefix}{number}") for number in range(count)]


def truncated_gzip(path: Path, count: int) -> Path:
    """Write `count` calls gzip-compressed, then cut the file at four fifths."""
    write(path, many_calls(count, "t"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 4 // 5])
    return path


def test_gzip_truncated_under_fail_raises(reader: Reader) -> None:
    truncated_gzip(reader.base_dir / "a.jsonl.gz", 100)
    source = reader.source(on_error="fail")

    with pytest.raises(DataError, match=r"^a\.jsonl\.gz, line 1: The gzip data"):
        reader.records(source)


def test_gzip_truncated_under_skip_goes_on(reader: Reader) -> None:
    # More than the 1 MiB read buffer, so that lines before the damage come out.
    total = 30_000
    truncated_gzip(reader.base_dir / "a.jsonl.gz", total)
    write(reader.base_dir / "b.jsonl", [call(messageId="b")])

    items = reader.items(reader.source(on_error="skip"))

    records = [item for item in items if not isinstance(item, Checkpoint)]
    read = len(records) - 1
    assert 0 < read < total
    assert ids(records[:read]) == [f"t{number}" for number in range(read)]
    assert records[-1]["messageId"] == "b"
    (reject,) = reader.rejects.kept
    assert (reject.file, reject.line, reject.raw) == ("a.jsonl.gz", read + 1, "")
    assert reject.reason.startswith(f"The gzip data is damaged from line {read + 1}")
    assert reject.reason.endswith("so the rest of the file was not read.")
    assert checkpoints(items)[-1] == {"files": {"a.jsonl.gz": read, "b.jsonl": 1}}


def test_gzip_name_on_a_plain_file_is_a_bad_record(reader: Reader) -> None:
    (reader.base_dir / "a.jsonl.gz").write_bytes(encoded(call()) + b"\n")

    records = reader.records(reader.source(on_error="skip"))

    assert records == []
    (reject,) = reader.rejects.kept
    assert reject.line == 1
    assert "Not a gzipped file" in reject.reason


# ----------------------------------------------------------------- checkpoints


def test_checkpoint_after_each_file_counts_every_line(reader: Reader) -> None:
    write(reader.base_dir / "a.jsonl", [call(messageId="a1"), "", "{bad"])
    write(reader.base_dir / "b.jsonl.gz", [call(messageId="b1"), call(messageId="b2")])

    items = reader.items(reader.source(on_error="skip"))

    kinds = [
        "cp" if isinstance(item, Checkpoint) else item["messageId"] for item in items
    ]
    assert kinds == ["a1", "cp", "b1", "b2", "cp"]
    assert checkpoints(items) == [
        {"files": {"a.jsonl": 3}},
        {"files": {"a.jsonl": 3, "b.jsonl.gz": 2}},
    ]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"], ids=["plain", "gzip"])
def test_cursor_resume_reads_only_appended_lines(reader: Reader, suffix: str) -> None:
    first = write(reader.base_dir / f"a{suffix}", many_calls(3, "a"))
    write(reader.base_dir / f"b{suffix}", many_calls(2, "b"))
    cursor = checkpoints(reader.items(reader.source()))[-1]

    append(first, [call(messageId="a-new-1"), call(messageId="a-new-2")])
    write(reader.base_dir / f"c{suffix}", [call(messageId="c-new")])
    items = reader.items(reader.source(), cursor)

    records = [item for item in items if not isinstance(item, Checkpoint)]
    assert ids(records) == ["a-new-1", "a-new-2", "c-new"]
    expected = {f"a{suffix}": 5, f"b{suffix}": 2, f"c{suffix}": 1}
    assert checkpoints(items)[-1] == {"files": expected}


def test_cursor_resume_with_nothing_new_yields_nothing(reader: Reader) -> None:
    write(reader.base_dir / "a.jsonl", many_calls(3, "a"))
    cursor = checkpoints(reader.items(reader.source()))[-1]

    items = reader.items(reader.source(), cursor)

    assert items == [Checkpoint(cursor)]


def test_cursor_names_files_outside_the_recipe_folder_absolutely(
    reader: Reader, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = write(tmp_path_factory.mktemp("exports") / "e.jsonl", [call()])

    items = reader.items(reader.source(path=str(outside)))

    assert checkpoints(items) == [{"files": {outside.as_posix(): 1}}]


def test_cursor_longer_than_the_file_warns(
    reader: Reader, caplog: pytest.LogCaptureFixture
) -> None:
    write(reader.base_dir / "a.jsonl", many_calls(3, "a"))
    cursor = {"files": {"a.jsonl": 10}}

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        items = reader.items(reader.source(), cursor)

    assert checkpoints(items) == [cursor]
    assert "a.jsonl has 3 lines, fewer than the 10 read before" in caplog.text


@pytest.mark.parametrize(
    "cursor",
    [{"offset": 3}, {"files": {"a.jsonl": -1}}, {"files": ["a.jsonl"]}, "a.jsonl"],
    ids=["no-files", "negative", "list", "string"],
)
def test_cursor_not_written_by_the_source_raises(reader: Reader, cursor: Any) -> None:
    write(reader.base_dir / "a.jsonl", [call()])
    source = reader.source()

    with pytest.raises(PluginError, match="Source 'events' cannot resume from"):
        reader.items(source, cursor)


# ----------------------------------------------------------------------- check


def test_check_reports_matching_files(reader: Reader) -> None:
    write(reader.base_dir / "a.jsonl", [call()])
    write(reader.base_dir / "b.jsonl", [call()])

    (result,) = reader.source().check()

    assert result.ok
    assert result.message == "2 files match '*.jsonl*'."


def test_check_reports_no_match(reader: Reader) -> None:
    (result,) = reader.source(path="missing.jsonl").check()

    assert not result.ok
    assert result.message.startswith("No file matches 'missing.jsonl'")
