"""The CSV source, read through real files: types, layouts, bad rows and streaming."""

from __future__ import annotations

import gzip
import importlib.metadata
import logging
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import pluggy
import pytest
from jsonschema import Draft202012Validator

from pqlhub import DataError, RecipeError, Record, SourceContext, hookspecs
from pqlhub.testing import KeptRejects, Reject
from pqlhub_csv import CsvSource

LOGGER = "pqlhub.plugins.csv.test"


class Harness:
    """Writes CSV files into a folder and reads them through a CsvSource."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.rejects = KeptRejects()
        self.context = self.make_context()

    def write(self, name: str, text: str, encoding: str = "utf-8") -> Path:
        path = self.base_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = text.encode(encoding)
        if name.endswith(".gz"):
            data = gzip.compress(data)
        path.write_bytes(data)
        return path

    def make_context(
        self,
        on_error: Literal["fail", "skip"] = "fail",
        key: str | None = None,
    ) -> SourceContext:
        return SourceContext(
            name="users",
            entity="contact",
            key=key,
            base_dir=self.base_dir,
            on_error=on_error,
            rejects=self.rejects,
            logger=logging.getLogger(LOGGER),
        )

    def source(
        self,
        config: dict[str, Any],
        on_error: Literal["fail", "skip"] = "fail",
        key: str | None = None,
    ) -> CsvSource:
        self.context = self.make_context(on_error, key)
        return CsvSource(config, self.context)

    def read(
        self,
        config: dict[str, Any],
        on_error: Literal["fail", "skip"] = "fail",
        key: str | None = None,
    ) -> list[Record]:
        items = list(self.source(config, on_error, key).read())
        records = [item for item in items if isinstance(item, dict)]
        assert records == items, "The CSV source yields no checkpoints."
        return records


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


# ---------------------------------------------------------------------- types


@pytest.mark.parametrize(
    ("kind", "cell", "expected"),
    [
        pytest.param("integer", " +42 ", 42, id="integer-signed-spaced"),
        pytest.param("integer", "-7", -7, id="integer-negative"),
        pytest.param("number", "3.5", 3.5, id="number-decimal"),
        pytest.param("number", "-.5", -0.5, id="number-leading-dot"),
        pytest.param("number", "1e3", 1000.0, id="number-exponent"),
        pytest.param("boolean", "Yes", True, id="boolean-yes"),
        pytest.param("boolean", " F ", False, id="boolean-f"),
        pytest.param("boolean", "0", False, id="boolean-zero"),
        pytest.param(
            "datetime", "2024-05-01", datetime(2024, 5, 1, tzinfo=UTC), id="date"
        ),
        pytest.param(
            "datetime",
            "2024-05-01T09:30:00Z",
            datetime(2024, 5, 1, 9, 30, tzinfo=UTC),
            id="datetime-z",
        ),
        pytest.param(
            "datetime",
            "2024-05-01 09:30:00",
            datetime(2024, 5, 1, 9, 30, tzinfo=UTC),
            id="datetime-naive-is-utc",
        ),
        pytest.param(
            "datetime",
            "2024-05-01T09:30:00+02:00",
            datetime(2024, 5, 1, 9, 30, tzinfo=timezone(timedelta(hours=2))),
            id="datetime-offset",
        ),
        pytest.param("list", " a; b ;;c ", ["a", "b", "c"], id="list"),
        pytest.param("string", " as is ", " as is ", id="string-untouched"),
    ],
)
def test_field_type_converts_cell(
    harness: Harness, kind: str, cell: str, expected: object
) -> None:
    harness.write("data.csv", f"value\n{cell}\n")

    [record] = harness.read({"path": "data.csv", "fields": {"value": kind}})

    assert record == {"value": expected}
    assert type(record["value"]) is type(expected)


@pytest.mark.parametrize(
    ("kind", "cell", "problem"),
    [
        pytest.param("integer", "3.0", "'3.0', which is not an integer", id="int-3.0"),
        pytest.param(
            "integer", "1_000", "'1_000', which is not an integer", id="int-underscore"
        ),
        pytest.param("integer", "abc", "'abc', which is not an integer", id="int-word"),
        pytest.param("number", "nan", "'nan', which is not a number", id="number-nan"),
        pytest.param("number", "-inf", "'-inf', which is not a number", id="num-inf"),
        pytest.param(
            "number", "1e999", "'1e999', which is too large for a number", id="num-big"
        ),
        pytest.param(
            "number", "1_0.5", "'1_0.5', which is not a number", id="num-underscore"
        ),
        pytest.param(
            "boolean", "maybe", "'maybe', which is not a boolean", id="boolean-word"
        ),
        pytest.param(
            "datetime",
            "01/05/2024",
            "'01/05/2024', which is not an ISO 8601 date or date-time",
            id="datetime-not-iso",
        ),
    ],
)
def test_field_type_rejects_cell(
    harness: Harness, kind: str, cell: str, problem: str
) -> None:
    harness.write("data.csv", f"value\n{cell}\n")

    with pytest.raises(DataError) as caught:
        harness.read({"path": "data.csv", "fields": {"value": kind}})

    assert caught.value.reason.startswith(f"Column 'value' holds {problem}")
    assert (caught.value.file, caught.value.line) == ("data.csv", 2)


def test_field_datetime_format_parses_cells(harness: Harness) -> None:
    harness.write("data.csv", "day,stamp\n01/05/2024,2024-05-01 09:30 +0200\n")
    fields = {
        "day": {"type": "datetime", "format": "%d/%m/%Y"},
        "stamp": {"type": "datetime", "format": "%Y-%m-%d %H:%M %z"},
    }

    [record] = harness.read({"path": "data.csv", "fields": fields})

    assert record == {
        "day": datetime(2024, 5, 1, tzinfo=UTC),
        "stamp": datetime(2024, 5, 1, 9, 30, tzinfo=timezone(timedelta(hours=2))),
    }


def test_field_datetime_format_rejects_other_cells(harness: Harness) -> None:
    harness.write("data.csv", "day\n2024-05-01\n")
    fields = {"day": {"type": "datetime", "format": "%d/%m/%Y"}}

    with pytest.raises(DataError, match="does not match the format '%d/%m/%Y'"):
        harness.read({"path": "data.csv", "fields": fields})


def test_field_list_separator_splits_cells(harness: Harness) -> None:
    harness.write("data.csv", 'tags\n"sales, ops,,"\n')

    [record] = harness.read(
        {"path": "data.csv", "fields": {"tags": "list"}, "list_separator": ","}
    )

    assert record == {"tags": ["sales", "ops"]}


# -------------------------------------------------------------------- layouts


def test_read_renames_columns_and_passes_others_through(harness: Harness) -> None:
    harness.write("users.csv", "Email Address,Seats,Plan\na@x.com,3,trial\n")
    fields = {
        "email": {"column": "Email Address"},
        "seats": {"column": "Seats", "type": "integer"},
    }

    [record] = harness.read({"path": "users.csv", "fields": fields})

    assert record == {"email": "a@x.com", "seats": 3, "Plan": "trial"}


def test_read_only_mapped_leaves_other_columns_out(harness: Harness) -> None:
    harness.write("users.csv", "email,seats,plan\na@x.com,3,trial\n")

    [record] = harness.read(
        {"path": "users.csv", "fields": {"seats": "integer"}, "only_mapped": True},
        key="email",
    )

    assert record == {"seats": 3, "email": "a@x.com"}


def test_read_empty_cell_leaves_field_out(harness: Harness) -> None:
    harness.write("users.csv", "email,seats,plan\na@x.com,, \n")

    [record] = harness.read({"path": "users.csv", "fields": {"seats": "integer"}})

    assert record == {"email": "a@x.com"}


def test_read_strips_header_names(harness: Harness) -> None:
    harness.write("users.csv", "email , seats\na@x.com, 3\n")

    [record] = harness.read({"path": "users.csv", "fields": {"seats": "integer"}})

    assert record == {"seats": 3, "email": "a@x.com"}


def test_read_ignores_blank_lines(harness: Harness) -> None:
    harness.write("users.csv", "email,seats\n\na@x.com,1\n\nb@x.com,x\n")

    with pytest.raises(DataError) as caught:
        harness.read({"path": "users.csv", "fields": {"seats": "integer"}})

    assert caught.value.line == 5


# ----------------------------------------------------------- files and dialect


@pytest.mark.parametrize(
    ("encoding", "written"),
    [
        pytest.param(None, "utf-8", id="default"),
        pytest.param("utf-8", "utf-8", id="utf-8"),
        pytest.param("UTF8", "utf-8", id="utf8-spelling"),
        pytest.param("utf-16", "utf-16-le", id="utf-16"),
        pytest.param("utf-16-le", "utf-16-le", id="utf-16-le"),
    ],
)
def test_read_drops_byte_order_mark(
    harness: Harness, encoding: str | None, written: str
) -> None:
    harness.write("users.csv", "\ufeffemail,name\na@x.com,Zoë\n", written)
    config = {"path": "users.csv"}
    if encoding is not None:
        config["encoding"] = encoding

    records = harness.read(config, key="email")

    assert records == [{"email": "a@x.com", "name": "Zoë"}]


def test_read_drops_utf8_byte_order_mark_whatever_the_encoding(
    harness: Harness,
) -> None:
    harness.write("users.csv.gz", "\ufeffemail,name\na@x.com,Ann\n")

    records = harness.read({"path": "users.csv.gz", "encoding": "cp1252"})

    assert records == [{"email": "a@x.com", "name": "Ann"}]


def test_read_decodes_latin1_file(harness: Harness) -> None:
    harness.write("users.csv", "email,name\na@x.com,Zoë Ærø\n", "latin-1")

    records = harness.read({"path": "users.csv", "encoding": "latin-1"})

    assert records == [{"email": "a@x.com", "name": "Zoë Ærø"}]


def test_read_undecodable_byte_is_bad_row_at_its_line(harness: Harness) -> None:
    harness.write("users.csv", "email,name\na@x.com,Ann\nb@x.com,Zoë\n", "latin-1")

    records = harness.read({"path": "users.csv"}, on_error="skip")

    assert records == [{"email": "a@x.com", "name": "Ann"}]
    assert harness.rejects.kept == [
        Reject(
            "users.csv",
            3,
            "The row holds a byte (0xeb) that is not valid utf-8; "
            "set `encoding` to the file's encoding.",
            "b@x.com,Zo\\xeb",
        )
    ]


def test_read_unplaceable_decoding_error_names_file_and_encoding(
    harness: Harness,
) -> None:
    # An odd number of bytes is no UTF-16, and the fault is in no line.
    (harness.base_dir / "users.csv").write_bytes("email\na\n".encode("utf-16") + b"x")

    with pytest.raises(DataError, match="not valid utf-16 text") as caught:
        harness.read({"path": "users.csv", "encoding": "utf-16"})

    assert caught.value.file == "users.csv"


@pytest.mark.parametrize(
    "delimiter",
    [
        pytest.param("\t", id="tab"),
        pytest.param(";", id="semicolon"),
        pytest.param("|", id="pipe"),
    ],
)
def test_read_splits_on_delimiter(harness: Harness, delimiter: str) -> None:
    harness.write("users.csv", f"email{delimiter}name\na@x.com{delimiter}A, B\n")

    records = harness.read({"path": "users.csv", "delimiter": delimiter})

    assert records == [{"email": "a@x.com", "name": "A, B"}]


def test_read_honours_quotechar(harness: Harness) -> None:
    harness.write("users.csv", "email,name\na@x.com,'Lee, Ann'\n")

    records = harness.read({"path": "users.csv", "quotechar": "'"})

    assert records == [{"email": "a@x.com", "name": "Lee, Ann"}]


def test_read_glob_reads_files_in_sorted_order(tmp_path: Path) -> None:
    # Glob characters in the recipe's own folder must be taken literally.
    harness = Harness(tmp_path / "exports [2024]")
    harness.write("data/b.csv", "email\nb@x.com\n")
    harness.write("data/a.csv", "email\na@x.com\n")
    harness.write("data/c.csv.gz", "email\nc@x.com\n")
    harness.write("data/notes.txt", "email\nnot@x.com\n")

    records = harness.read({"path": "data/*.csv*"})

    assert records == [{"email": "a@x.com"}, {"email": "b@x.com"}, {"email": "c@x.com"}]


def test_read_gzip_file_is_decompressed(harness: Harness) -> None:
    harness.write("users.csv.gz", "email,seats\na@x.com,3\n")

    records = harness.read({"path": "users.csv.gz", "fields": {"seats": "integer"}})

    assert records == [{"seats": 3, "email": "a@x.com"}]


def test_read_broken_gzip_file_is_error(harness: Harness) -> None:
    (harness.base_dir / "users.csv.gz").write_bytes(b"email\na@x.com\n")

    with pytest.raises(DataError, match="cannot be opened: Not a gzipped file"):
        harness.read({"path": "users.csv.gz"}, on_error="skip")


def test_read_truncated_gzip_file_names_the_line(harness: Harness) -> None:
    rows = "".join(f"user{i}@x.com\n" for i in range(10_000))
    data = gzip.compress(f"email\n{rows}".encode())
    (harness.base_dir / "users.csv.gz").write_bytes(data[: len(data) // 2])

    with pytest.raises(
        DataError, match="cannot be read: Compressed file ended"
    ) as caught:
        harness.read({"path": "users.csv.gz"}, on_error="skip")

    assert caught.value.line is not None
    assert caught.value.line > 2


def test_read_absolute_path(harness: Harness) -> None:
    path = harness.write("users.csv", "email\na@x.com\n")

    assert harness.read({"path": str(path)}) == [{"email": "a@x.com"}]


@pytest.mark.parametrize(
    "path", [pytest.param("missing.csv", id="file"), pytest.param("*.tsv", id="glob")]
)
def test_read_no_matching_file_is_error(harness: Harness, path: str) -> None:
    harness.write("users.csv", "email\na@x.com\n")
    source = harness.source({"path": path})

    with pytest.raises(DataError, match=f"No file matches '{re.escape(path)}'"):
        list(source.read())


def test_read_logs_one_line_per_file(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.write("a.csv", "email,seats\na@x.com,1\nb@x.com,x\n")
    harness.write("b.csv", "email,seats\nc@x.com,2\n")
    caplog.set_level(logging.INFO, logger=LOGGER)

    harness.read({"path": "*.csv", "fields": {"seats": "integer"}}, on_error="skip")

    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == [
        "Read 1 rows from a.csv (1 skipped)",
        "Read 1 rows from b.csv (0 skipped)",
    ]


# ------------------------------------------------------------------- bad rows

MULTILINE = 'email,note,seats\na@x.com,"two\nlines",1\nb@x.com,"three\nmore\nlines",2\n'


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        pytest.param(
            "email,seats\na@x.com,1\nb@x.com,abc\n",
            3,
            "Column 'seats' holds 'abc', which is not an integer.",
            id="bad-value",
        ),
        pytest.param(
            MULTILINE + "c@x.com,plain,abc\n",
            7,
            "Column 'seats' holds 'abc', which is not an integer.",
            id="after-multiline-cells",
        ),
        pytest.param(
            MULTILINE + 'c@x.com,"spans\nlines",abc\n',
            7,
            "Column 'seats' holds 'abc', which is not an integer.",
            id="multiline-bad-row",
        ),
        pytest.param(
            "email,seats\na@x.com,1,extra,more\n",
            2,
            "Row has 4 cells; the header has 2.",
            id="too-many-cells",
        ),
        pytest.param(
            "email,seats\na@x.com\n",
            2,
            "Row has 1 cells; the header has 2.",
            id="too-few-cells",
        ),
        pytest.param(
            'email,seats\na@x.com,"1"2\n',
            2,
            "The text is not valid CSV here (',' expected after '\"').",
            id="text-after-quote",
        ),
        pytest.param(
            'email,seats\na@x.com,1\nb@x.com,"2\n',
            3,
            "The text is not valid CSV here (unexpected end of data).",
            id="unclosed-quote",
        ),
    ],
)
def test_read_fail_names_file_and_line(
    harness: Harness, text: str, line: int, reason: str
) -> None:
    harness.write("users.csv", text)
    source = harness.source({"path": "users.csv", "fields": {"seats": "integer"}})

    with pytest.raises(DataError) as caught:
        list(source.read())

    assert (caught.value.file, caught.value.line) == ("users.csv", line)
    assert caught.value.reason == reason
    assert str(caught.value) == f"users.csv, line {line}: {reason}"


def test_read_skip_yields_good_rows_and_rejects_bad_ones(harness: Harness) -> None:
    harness.write(
        "users.csv",
        "email,seats,joined\r\n"
        "a@x.com,1,2024-01-02\r\n"
        'b@x.com,"1\r\n0",2024-01-02\r\n'
        ",3,2024-01-03\r\n"
        "d@x.com,4,yesterday\r\n"
        "e@x.com,5\r\n"
        "f@x.com,6,2024-01-06\r\n",
    )
    fields = {"seats": {"type": "integer", "required": True}, "joined": "datetime"}

    records = harness.read(
        {"path": "users.csv", "fields": fields}, on_error="skip", key="email"
    )

    assert [record["email"] for record in records] == ["a@x.com", "f@x.com"]
    assert harness.context.skipped == 4
    assert harness.rejects.kept == [
        Reject(
            "users.csv",
            3,
            "Column 'seats' holds '1\\r\\n0', which is not an integer.",
            'b@x.com,"1\r\n0",2024-01-02',
        ),
        Reject(
            "users.csv",
            5,
            "Column 'email' is empty, but it holds the contact key 'email'.",
            ",3,2024-01-03",
        ),
        Reject(
            "users.csv",
            6,
            "Column 'joined' holds 'yesterday', "
            "which is not an ISO 8601 date or date-time.",
            "d@x.com,4,yesterday",
        ),
        Reject("users.csv", 7, "Row has 2 cells; the header has 3.", "e@x.com,5"),
    ]


def test_read_required_empty_cell_is_bad_row(harness: Harness) -> None:
    harness.write("users.csv", "email,seats\na@x.com, \n")
    fields = {"seats": {"type": "integer", "required": True}}

    with pytest.raises(DataError) as caught:
        harness.read({"path": "users.csv", "fields": fields})

    assert (
        caught.value.reason == "Column 'seats' is empty, but field 'seats' is required."
    )


def test_read_truncates_long_values_in_reasons(harness: Harness) -> None:
    harness.write("users.csv", f"seats\n{'9' * 30}x{'9' * 30}\n")

    with pytest.raises(DataError) as caught:
        harness.read({"path": "users.csv", "fields": {"seats": "integer"}})

    shown = "'" + "9" * 30 + "x999999...'"
    assert (
        caught.value.reason == f"Column 'seats' holds {shown}, which is not an integer."
    )


# --------------------------------------------------------------------- header


def test_read_header_missing_mapped_column_is_error(harness: Harness) -> None:
    harness.write("users.csv", "id,email,name\n1,a@x.com,Ann\n")
    source = harness.source(
        {"path": "users.csv", "fields": {"email": {"column": "Email Address"}}}
    )

    with pytest.raises(DataError) as caught:
        next(source.read())

    assert str(caught.value) == (
        "users.csv, line 1: Column 'Email Address' is not in the header; "
        "the header has: id, email, name."
    )


def test_read_header_missing_key_column_is_error(harness: Harness) -> None:
    harness.write("users.csv", "id,name\n1,Ann\n")

    with pytest.raises(DataError, match="Column 'email' is not in the header"):
        harness.read({"path": "users.csv"}, key="email")


@pytest.mark.parametrize(
    ("text", "fields", "message"),
    [
        pytest.param(
            "email,name,email\n",
            {},
            "users.csv, line 1: Column 'email' appears twice in the header "
            "(cells 1 and 3).",
            id="duplicate-name",
        ),
        pytest.param(
            "email,,name\n",
            {},
            "users.csv, line 1: Header cell 2 is empty; every column needs a name.",
            id="empty-name",
        ),
        pytest.param(
            "",
            {},
            "users.csv: The file is empty; it needs a header row.",
            id="empty-file",
        ),
        pytest.param(
            "E-mail,email\n",
            {"email": {"column": "E-mail"}},
            "users.csv, line 1: Column 'email' would pass through under the name "
            "of the field 'email', which comes from column 'E-mail'; rename the "
            "field or set `only_mapped`.",
            id="passthrough-clash",
        ),
    ],
)
def test_read_bad_header_is_error(
    harness: Harness, text: str, fields: dict[str, Any], message: str
) -> None:
    harness.write("users.csv", text)

    with pytest.raises(DataError) as caught:
        harness.read({"path": "users.csv", "fields": fields}, on_error="skip")

    assert str(caught.value) == message


def test_check_reports_each_file(harness: Harness) -> None:
    harness.write("a.csv", "email\na@x.com\n")
    harness.write("b.csv", "name\nAnn\n")
    source = harness.source({"path": "*.csv"}, key="email")

    results = source.check()

    assert [(result.name, result.ok) for result in results] == [
        ("header of a.csv", True),
        ("header of b.csv", False),
    ]
    assert results[1].message.startswith("Column 'email' is not in the header")


# --------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param(
            {"path": "a.csv", "encoding": "klingon"},
            "`encoding` is 'klingon', which Python does not know.",
            id="unknown-encoding",
        ),
        pytest.param(
            {"path": "a.csv", "delimiter": "'", "quotechar": "'"},
            '`delimiter` and `quotechar` are both "\'". They must differ.',
            id="delimiter-is-quotechar",
        ),
    ],
)
def test_source_rejects_meaningless_config(
    harness: Harness, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(RecipeError, match=re.escape(message)):
        harness.source(config)


def test_config_schema_is_valid_json_schema() -> None:
    Draft202012Validator.check_schema(CsvSource.config_schema)


def test_config_schema_accepts_every_key() -> None:
    config = {
        "path": "data/*.csv.gz",
        "encoding": "cp1252",
        "delimiter": "\t",
        "quotechar": "'",
        "fields": {
            "email": {"column": "Email Address", "required": True},
            "seats": "integer",
            "joined": {"type": "datetime", "format": "%d/%m/%Y"},
        },
        "only_mapped": True,
        "list_separator": ",",
    }

    assert list(Draft202012Validator(CsvSource.config_schema).iter_errors(config)) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param(
            {"path": "a.csv", "sheet": 1},
            "Additional properties are not allowed ('sheet' was unexpected)",
            id="unknown-key",
        ),
        pytest.param({"path": 3}, "3 is not of type 'string'", id="path-not-string"),
        pytest.param({}, "'path' is a required property", id="no-path"),
        pytest.param(
            {"path": "a.csv", "delimiter": ",,"}, "',,' is too long", id="delimiter"
        ),
        pytest.param(
            {"path": "a.csv", "fields": {"seats": "int"}},
            "'int' is not one of",
            id="unknown-type",
        ),
        pytest.param(
            {"path": "a.csv", "fields": {"seats": {"type": "integer", "fmt": "%d"}}},
            "('fmt' was unexpected)",
            id="unknown-field-key",
        ),
        pytest.param(
            {"path": "a.csv", "fields": {"day": {"type": "string", "format": "%d"}}},
            "'datetime' was expected",
            id="format-without-datetime",
        ),
    ],
)
def test_config_schema_rejects_bad_block(config: dict[str, Any], message: str) -> None:
    validator = Draft202012Validator(CsvSource.config_schema)

    messages = [error.message for error in validator.iter_errors(config)]

    assert any(message in found for found in messages), messages


# --------------------------------------------------------------------- plugin


def test_plugin_is_found_through_entry_point() -> None:
    [entry_point] = importlib.metadata.entry_points(group="pqlhub", name="csv")
    assert entry_point.value == "pqlhub_csv"
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)

    manager.register(entry_point.load(), name=entry_point.name)

    assert manager.hook.pqlhub_source_types() == [[CsvSource]]
    assert CsvSource.name == "csv"
    assert CsvSource.capabilities.entities == {"contact", "account", "event"}
    assert not CsvSource.capabilities.incremental


# ------------------------------------------------------------------ streaming

ROWS = 1_000_000

COUNT_ROWS = textwrap.dedent(
    """
    import logging, pathlib, resource, sys
    from pqlhub import RejectSink, SourceContext
    from pqlhub_csv import CsvSource

    class Refuse(RejectSink):
        def reject(self, file, line, reason, raw):
            raise AssertionError(reason)

    context = SourceContext(
        "users", "contact", "email", pathlib.Path(sys.argv[1]), "fail",
        Refuse(), logging.getLogger("bench"),
    )
    config = {"path": "users.csv", "fields": {"id": "integer", "seats": "integer"}}
    source = CsvSource(config, context)
    unit = 1024 if sys.platform == "darwin" else 1  # bytes there, KiB on Linux
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // unit
    count = sum(1 for _ in source.read())
    print(count, before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // unit)
    """
)


@pytest.mark.skipif(
    sys.platform == "win32",
    reason="The resource module is Unix-only; this runs on Linux and macOS.",
)
def test_read_streams_a_million_rows_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("id,email,name,plan,seats\n")
        out.writelines(
            f"{i},user{i}@example.com,User {i},trial,{i % 50}\n" for i in range(ROWS)
        )
    size_kib = path.stat().st_size // 1024

    done = subprocess.run(
        [sys.executable, "-c", COUNT_ROWS, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    count, before_kib, peak_kib = map(int, done.stdout.split())

    assert count == ROWS
    # The file is about 48 MiB. Holding its text alone would raise the peak by as
    # much, and holding its rows as lists by about 440 MiB (measured). Reading it
    # row by row raised the peak by nothing measurable, so 8 MiB of growth leaves
    # room for noise while still proving that no more than a few rows are kept.
    assert size_kib > 40 * 1024
    assert peak_kib - before_kib < 8 * 1024, (before_kib, peak_kib)


# ------------------------------------------------------------ wanted fields


def test_csv_source_reads_only_the_fields_the_recipe_uses(harness: Harness) -> None:
    harness.write(
        "users.csv",
        "email,plan,signed_up_at,notes\n"
        "ann@acme.test,pro,not a date,hello\n"
        "bob@acme.test,free,2024-05-01,\n",
    )
    source = harness.source(
        {"path": "users.csv", "fields": {"signed_up_at": "datetime"}}, key="email"
    )
    source.context.fields = frozenset({"email", "plan"})

    records = list(source.read())

    # The unused typed column is neither converted nor checked.
    assert records == [
        {"email": "ann@acme.test", "plan": "pro"},
        {"email": "bob@acme.test", "plan": "free"},
    ]


def test_csv_source_still_needs_unused_mapped_columns(harness: Harness) -> None:
    harness.write("users.csv", "email,plan\nann@acme.test,pro\n")
    source = harness.source(
        {"path": "users.csv", "fields": {"signed_up_at": "datetime"}}, key="email"
    )
    source.context.fields = frozenset({"email"})

    with pytest.raises(DataError, match=r"Column 'signed_up_at' is not in the header"):
        list(source.read())
