"""The CSV source: contacts, accounts or events read row by row from CSV files."""

from __future__ import annotations

import codecs
import csv
import functools
import glob
import gzip
import io
import json
import math
import os
import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, TextIO

from pqlhub import (
    Checkpoint,
    CheckResult,
    DataError,
    RecipeError,
    Record,
    Source,
    SourceCapabilities,
    SourceContext,
)

__all__ = ["FIELD_SIZE_LIMIT", "CsvSource"]

FIELD_SIZE_LIMIT = 16 * 1024 * 1024
"""The most characters one cell may hold; a longer cell makes its row bad.

It bounds the memory a row can take, even when a quote is never closed.
"""

_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TRUE = frozenset({"true", "yes", "y", "t", "1"})
_FALSE = frozenset({"false", "no", "n", "f", "0"})

# Files are decoded with errors="surrogateescape", which turns each byte the
# encoding rejects into one of these code points, so a bad byte spoils only its row.
_UNDECODABLE = re.compile(r"[\udc80-\udcff]")

_Convert = Callable[[str], Any]


class _BadValueError(Exception):
    """A cell its field's type cannot take; the message completes the reason."""


class _BadRowError(Exception):
    """A row that cannot become a record; the message is the reason."""


# ------------------------------------------------------------------ cell types


def _to_string(text: str) -> str:
    return text


def _to_integer(text: str) -> int:
    stripped = text.strip()
    if not _INTEGER.fullmatch(stripped):
        raise _BadValueError("which is not an integer")
    return int(stripped)


def _to_number(text: str) -> float:
    stripped = text.strip()
    if not _NUMBER.fullmatch(stripped):
        raise _BadValueError("which is not a number")
    value = float(stripped)
    if not math.isfinite(value):
        raise _BadValueError("which is too large for a number")
    return value


def _to_boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise _BadValueError("which is not a boolean (true/false, yes/no, y/n, t/f or 1/0)")


def _to_datetime(text: str, format: str | None) -> datetime:
    stripped = text.strip()
    try:
        if format is None:
            value = datetime.fromisoformat(stripped)
        else:
            value = datetime.strptime(stripped, format)
    except ValueError:
        if format is None:
            raise _BadValueError("which is not an ISO 8601 date or date-time") from None
        raise _BadValueError(f"which does not match the format {format!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _to_list(text: str, separator: str) -> list[str]:
    return [item.strip() for item in text.split(separator) if item.strip()]


_SIMPLE: Mapping[str, _Convert] = {
    "string": _to_string,
    "integer": _to_integer,
    "number": _to_number,
    "boolean": _to_boolean,
}


def _converter(kind: str, format: str | None, separator: str) -> _Convert:
    if kind == "datetime":
        return functools.partial(_to_datetime, format=format)
    if kind == "list":
        return functools.partial(_to_list, separator=separator)
    return _SIMPLE[kind]


def _shown(cell: str) -> str:
    return repr(cell if len(cell) <= 40 else cell[:37] + "...")


# ----------------------------------------------------------------- the layout


@dataclass(frozen=True)
class _Field:
    """One output field of the config, and where its value comes from.

    Attributes:
        name: The field's name in each record.
        column: The header name of its column.
        convert: Turns a non-empty cell into the field's value.
        missing: The reason an empty cell makes the row bad, or None when the
            field is then just left out.
    """

    name: str
    column: str
    convert: _Convert
    missing: str | None


@dataclass(frozen=True)
class _Layout:
    """How the rows of one file become records, worked out from its header.

    Attributes:
        width: How many cells every row must have.
        fields: The mapped fields, each with the index of its column.
        passthrough: The unmapped columns kept as strings: index and name.
    """

    width: int
    fields: tuple[tuple[int, _Field], ...]
    passthrough: tuple[tuple[int, str], ...]

    def record(self, row: _Row) -> Record:
        """Build the record of one row.

        Raises:
            _BadRowError: When the row could not be parsed or decoded, has the
                wrong number of cells, lacks a required value, or holds a value
                its field's type rejects.
        """
        if row.problem is not None:
            raise _BadRowError(row.problem)
        cells = row.cells
        if len(cells) != self.width:
            reason = f"Row has {len(cells)} cells; the header has {self.width}."
            raise _BadRowError(reason)
        record: Record = {}
        for index, field in self.fields:
            cell = cells[index]
            if not cell or cell.isspace():
                if field.missing is not None:
                    raise _BadRowError(field.missing)
                continue
            try:
                record[field.name] = field.convert(cell)
            except _BadValueError as exc:
                reason = f"Column {field.column!r} holds {_shown(cell)}, {exc}."
                raise _BadRowError(reason) from None
        for index, name in self.passthrough:
            cell = cells[index]
            if cell and not cell.isspace():
                record[name] = cell
        return record


# ------------------------------------------------------------------- the rows


class _Row(NamedTuple):
    """One parsed row and where it came from.

    Attributes:
        line: The 1-based physical line the row starts on.
        cells: Its cells; empty when the text could not be parsed.
        text: The lines it was parsed from, as decoded.
        problem: Why the row cannot be used whatever the layout, or None.
    """

    line: int
    cells: list[str]
    text: str
    problem: str | None

    @property
    def raw(self) -> str:
        """The row's text without its line break, undecodable bytes as `\\xNN`."""
        text = self.text.removesuffix("\n").removesuffix("\r")
        return _UNDECODABLE.sub(lambda m: f"\\x{ord(m[0]) - 0xDC00:02x}", text)


class _Dialect(NamedTuple):
    """How a block's files are written: their encoding and their CSV dialect."""

    encoding: str
    delimiter: str
    quotechar: str


class _Rows:
    """Parses a text stream into rows, keeping each row's first line and its text.

    The csv reader never reads past the record it returns, so the lines fed to it
    since the previous row are exactly the current row's text.
    """

    def __init__(self, stream: TextIO, file: str, dialect: _Dialect) -> None:
        self._stream = stream
        self._file = file
        self._encoding = dialect.encoding
        self._lines: list[str] = []
        self._reader = csv.reader(
            self._tap(),
            delimiter=dialect.delimiter,
            quotechar=dialect.quotechar,
            strict=True,
        )

    def _tap(self) -> Iterator[str]:
        for line in self._stream:
            self._lines.append(line)
            yield line

    def __iter__(self) -> _Rows:
        return self

    def __next__(self) -> _Row:
        while True:
            line = self._reader.line_num + 1
            cells, problem = self._parse(line)
            text = "".join(self._lines)
            self._lines.clear()
            if cells or problem:
                break
        if problem is None and not text.isascii():
            problem = self._undecodable(text)
        return _Row(line, cells, text, problem)

    def _parse(self, line: int) -> tuple[list[str], str | None]:
        try:
            return next(self._reader), None
        except csv.Error as exc:
            return [], f"The text is not valid CSV here ({exc})."
        except UnicodeDecodeError as exc:
            reason = (
                f"The file is not valid {self._encoding} text ({exc.reason}); "
                "set `encoding` to the file's encoding."
            )
            raise DataError(self._file, None, reason) from exc
        except (OSError, EOFError, zlib.error) as exc:
            reason = f"The file cannot be read: {_describe(exc)}."
            raise DataError(self._file, line, reason) from exc

    def _undecodable(self, text: str) -> str | None:
        found = _UNDECODABLE.search(text)
        if found is None:
            return None
        byte = ord(found[0]) - 0xDC00
        return (
            f"The row holds a byte (0x{byte:02x}) that is not valid "
            f"{self._encoding}; set `encoding` to the file's encoding."
        )


# ----------------------------------------------------------------- the source


def _load_schema() -> Mapping[str, Any]:
    text = resources.files(__package__).joinpath("config.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


class CsvSource(Source):
    """Reads contacts, accounts or events from one CSV file or a glob of them.

    Each good row becomes one record: the mapped `fields` converted to their
    types, and the other columns as strings unless `only_mapped` is set. Empty
    cells leave their field out. A bad row goes to the block's `on_error`
    policy, with its file and the line it starts on.
    """

    name: ClassVar[str] = "csv"
    config_schema: ClassVar[Mapping[str, Any]] = _load_schema()
    capabilities: ClassVar[SourceCapabilities] = SourceCapabilities(
        entities=frozenset({"contact", "account", "event"})
    )

    def __init__(self, config: Mapping[str, Any], context: SourceContext) -> None:
        super().__init__(config, context)
        self.path: str = config["path"]
        self.dialect = _Dialect(
            encoding=config.get("encoding", "utf-8"),
            delimiter=config.get("delimiter", ","),
            quotechar=config.get("quotechar", '"'),
        )
        self._codec = _codec_for(self.dialect.encoding)
        if self.dialect.delimiter == self.dialect.quotechar:
            reason = f"`delimiter` and `quotechar` are both {self.dialect.delimiter!r}."
            raise RecipeError(f"{reason} They must differ.")
        self._only_mapped: bool = config.get("only_mapped", False)
        self._fields = self._build_fields(
            config.get("fields", {}), config.get("list_separator", ";")
        )

    def _build_fields(
        self, specs: Mapping[str, Any], separator: str
    ) -> dict[str, _Field]:
        """Return the configured fields by name, with the block's key among them."""
        fields: dict[str, _Field] = {}
        for name, spec in specs.items():
            table = {"type": spec} if isinstance(spec, str) else spec
            column = table.get("column", name)
            convert = _converter(
                table.get("type", "string"), table.get("format"), separator
            )
            missing = None
            if table.get("required", False):
                missing = f"Column {column!r} is empty, but field {name!r} is required."
            fields[name] = _Field(name, column, convert, missing)

        key = self.context.key
        if key is not None:
            fields[key] = self._key_field(key, fields.get(key))
        return fields

    def _key_field(self, key: str, mapped: _Field | None) -> _Field:
        """Return the key's field: as mapped, or a string of the same-named column.

        The core needs the key in every record, so it is read even with
        `only_mapped`, and an empty key cell makes the row bad.
        """
        field = mapped or _Field(key, key, _to_string, None)
        missing = (
            f"Column {field.column!r} is empty, but it holds "
            f"the {self.context.entity} key {key!r}."
        )
        return _Field(key, field.column, field.convert, missing)

    def read(self, cursor: Any = None) -> Iterator[Record | Checkpoint]:
        """Yield one record per good row of every matching file, in file order.

        Args:
            cursor: Ignored: the source is not incremental, and reads everything.

        Raises:
            DataError: When no file matches, a file or its header cannot be
                used, or a row is bad and the policy is `fail`.
        """
        if csv.field_size_limit() < FIELD_SIZE_LIMIT:
            # The limit is process-wide: raise it to ours, never lower another's.
            csv.field_size_limit(FIELD_SIZE_LIMIT)
        for file, path in self._files():
            yield from self._read_file(file, path)

    def check(self) -> list[CheckResult]:
        """Verify that the path matches files whose headers have every column."""
        try:
            files = self._files()
        except DataError as exc:
            return [CheckResult("files", False, exc.reason)]
        results = []
        for file, path in files:
            name = f"header of {file}"
            try:
                with self._open(file, path) as stream:
                    self._layout(_Rows(stream, file, self.dialect), file)
            except DataError as exc:
                results.append(CheckResult(name, False, exc.reason))
            else:
                message = "The header has every column the block needs."
                results.append(CheckResult(name, True, message))
        return results

    def _files(self) -> list[tuple[str, Path]]:
        """Return the files to read, each with the name messages give it."""
        exact = self.context.resolve(self.path)
        if exact.is_file():
            return [(self.path, exact)]
        # root_dir keeps glob characters in the recipe's own folder literal.
        pattern = os.path.expanduser(self.path)
        found = glob.glob(pattern, root_dir=self.context.base_dir, recursive=True)
        files = [(name, self.context.resolve(name)) for name in sorted(found)]
        files = [(name, path) for name, path in files if path.is_file()]
        if not files:
            reason = f"No file matches {self.path!r} (looked for {exact})."
            raise DataError(self.path, None, reason)
        return files

    def _open(self, file: str, path: Path) -> TextIO:
        """Open a file as text, decompressed and past any UTF-8 byte-order mark."""
        try:
            binary = _open_past_bom(path)
        except (OSError, EOFError, zlib.error) as exc:
            reason = f"The file cannot be opened: {_describe(exc)}."
            raise DataError(file, None, reason) from exc
        return io.TextIOWrapper(
            binary, encoding=self._codec, errors="surrogateescape", newline=""
        )

    def _read_file(self, file: str, path: Path) -> Iterator[Record]:
        """Yield the records of one file's good rows, and log what it held."""
        skipped_before = self.context.skipped
        count = 0
        with self._open(file, path) as stream:
            rows = _Rows(stream, file, self.dialect)
            layout = self._layout(rows, file)
            for row in rows:
                try:
                    record = layout.record(row)
                except _BadRowError as exc:
                    self.context.bad_record(file, row.line, str(exc), row.raw)
                    continue
                count += 1
                yield record
        skipped = self.context.skipped - skipped_before
        self.context.logger.info(
            "Read %d rows from %s (%d skipped)", count, file, skipped
        )

    def _layout(self, rows: _Rows, file: str) -> _Layout:
        """Read the header row and work out the file's layout from it.

        Raises:
            DataError: When the file is empty, or its header is unreadable, has an
                empty or repeated name, lacks a column the block needs, or would
                pass a column through under a mapped field's name.
        """
        header = next(rows, None)
        if header is None:
            raise DataError(file, None, "The file is empty; it needs a header row.")
        if header.problem is not None:
            raise DataError(file, header.line, header.problem)
        names = [cell.strip() for cell in header.cells]
        names[0] = names[0].removeprefix("\ufeff").strip()
        positions = _positions(names, file, header.line)

        bound = []
        wanted = self.context.fields
        for field in self._fields.values():
            if field.column not in positions:
                reason = (
                    f"Column {field.column!r} is not in the header; "
                    f"the header has: {', '.join(names)}."
                )
                raise DataError(file, header.line, reason)
            # Fields the recipe never reads are not converted: that is most of
            # a wide export's cost. Their columns must still exist.
            if wanted is None or field.name in wanted:
                bound.append((positions[field.column], field))
        passthrough = self._passthrough(names, file, header.line)
        if wanted is not None:
            passthrough = tuple((i, name) for i, name in passthrough if name in wanted)
        return _Layout(len(names), tuple(bound), passthrough)

    def _passthrough(
        self, names: list[str], file: str, line: int
    ) -> tuple[tuple[int, str], ...]:
        """Return the unmapped columns to keep, by index and name."""
        if self._only_mapped:
            return ()
        used = {field.column for field in self._fields.values()}
        kept = tuple((i, name) for i, name in enumerate(names) if name not in used)
        for _, name in kept:
            if name in self._fields:
                reason = (
                    f"Column {name!r} would pass through under the name of the "
                    f"field {name!r}, which comes from column "
                    f"{self._fields[name].column!r}; rename the field or set "
                    "`only_mapped`."
                )
                raise DataError(file, line, reason)
        return kept


def _positions(names: list[str], file: str, line: int) -> dict[str, int]:
    """Return each header name's index, refusing empty and repeated names."""
    positions: dict[str, int] = {}
    for index, name in enumerate(names):
        if not name:
            reason = f"Header cell {index + 1} is empty; every column needs a name."
            raise DataError(file, line, reason)
        if name in positions:
            reason = (
                f"Column {name!r} appears twice in the header "
                f"(cells {positions[name] + 1} and {index + 1})."
            )
            raise DataError(file, line, reason)
        positions[name] = index
    return positions


def _open_past_bom(path: Path) -> gzip.GzipFile | io.BufferedReader:
    """Open a file's bytes, decompressing `.gz`, and skip a UTF-8 byte-order mark.

    The mark is skipped whatever the block's encoding: in a file declared
    `latin-1` or `cp1252` it could only decode as junk in the first column name.
    """
    gzipped = path.name.lower().endswith(".gz")
    # The stream outlives this function: the reader closes it.
    binary = gzip.open(path) if gzipped else path.open("rb")  # noqa: SIM115
    try:
        if binary.read(len(codecs.BOM_UTF8)) != codecs.BOM_UTF8:
            binary.seek(0)
    except BaseException:
        binary.close()
        raise
    return binary


def _codec_for(encoding: str) -> str:
    """Return the name of the codec for `encoding`, refusing one Python lacks."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        reason = f"`encoding` is {encoding!r}, which Python does not know."
        raise RecipeError(f"{reason} Try 'utf-8', 'latin-1' or 'cp1252'.") from None


def _describe(exc: BaseException) -> str:
    """Return what went wrong, without the path an OSError repeats."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)
