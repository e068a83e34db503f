"""The ledger: pqlhub's state, in one SQLite file beside the recipe.

It holds what each sync's destination has confirmed per contact and segment (and a
hash of the fields last sent), each segment's membership history, the runs with
their counts, failed changes with their reason and attempts, source cursors, and
small per-destination state (remote ids). Only the plan and sync stages use it.

The file is created readable by its owner only. Its schema is versioned; opening an
older ledger migrates it forward, and a ledger newer than this pqlhub is refused.
Every write is a transaction, so a crash or kill leaves the last committed state.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from pqlhub.connectors import StateStore
from pqlhub.errors import PqlhubError

__all__ = ["Confirmed", "Failure", "Ledger", "LedgerError", "RunRecord"]

SCHEMA_VERSION: Final = 2

_MIGRATIONS: Final[dict[int, str]] = {
    1: """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        as_of TEXT NOT NULL,
        status TEXT NOT NULL,
        counts TEXT NOT NULL DEFAULT '{}',
        message TEXT
    );
    CREATE TABLE syncs (
        name TEXT PRIMARY KEY,
        destination TEXT NOT NULL,
        started_at TEXT NOT NULL
    );
    CREATE TABLE confirmed (
        sync TEXT NOT NULL,
        contact TEXT NOT NULL,
        segment TEXT NOT NULL,
        fields_hash TEXT NOT NULL,
        remote_id TEXT,
        confirmed_at TEXT NOT NULL,
        run_id INTEGER,
        PRIMARY KEY (sync, segment, contact)
    ) WITHOUT ROWID;
    CREATE TABLE membership (
        segment TEXT NOT NULL,
        contact TEXT NOT NULL,
        entered_at TEXT NOT NULL,
        left_at TEXT,
        segment_id TEXT NOT NULL
    );
    CREATE INDEX membership_open ON membership (segment, contact) WHERE left_at IS NULL;
    CREATE INDEX membership_contact ON membership (contact);
    CREATE TABLE failures (
        sync TEXT NOT NULL,
        contact TEXT NOT NULL,
        segment TEXT NOT NULL,
        change TEXT NOT NULL,
        change_id TEXT NOT NULL,
        action TEXT NOT NULL,
        kind TEXT NOT NULL,
        reason TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        first_failed_at TEXT NOT NULL,
        last_failed_at TEXT NOT NULL,
        dead INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (sync, segment, contact)
    ) WITHOUT ROWID;
    CREATE TABLE cursors (
        source TEXT PRIMARY KEY,
        cursor TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE destination_state (
        destination TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (destination, key)
    ) WITHOUT ROWID;
    """,
    2: """
    CREATE TABLE sync_exits (
        sync TEXT NOT NULL,
        segment TEXT NOT NULL,
        contact TEXT NOT NULL,
        exits INTEGER NOT NULL,
        PRIMARY KEY (sync, segment, contact)
    ) WITHOUT ROWID;
    ALTER TABLE confirmed ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE confirmed ADD COLUMN fields TEXT;
    """,
}


class LedgerError(PqlhubError):
    """The ledger file cannot be opened or is from a newer pqlhub."""


@dataclass(frozen=True)
class Confirmed:
    """What a destination confirmed for one contact in one segment.

    Attributes:
        fields_hash: The hash of the fields last sent.
        remote_id: The destination's id for the contact, when it gave one.
        version: How many times the sync has sent it since it entered.
    """

    fields_hash: str
    remote_id: str | None
    version: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Failure:
    """A change that failed, kept to be retried or inspected.

    Attributes:
        sync: The sync's name.
        contact: The contact's key.
        segment: The segment's name.
        change: `enter`, `exit` or `update`.
        change_id: The change's stable id.
        action: The destination action that failed.
        kind: `config`, `transient` or `data`.
        reason: What the destination said.
        attempts: How many runs tried it.
        first_failed_at: When it first failed.
        last_failed_at: When it last failed.
        dead: Whether it is a dead letter (no more automatic retries).
    """

    sync: str
    contact: str
    segment: str
    change: str
    change_id: str
    action: str
    kind: str
    reason: str
    attempts: int
    first_failed_at: str
    last_failed_at: str
    dead: bool

    def as_dict(self) -> dict[str, Any]:
        """Return the failure as JSON-ready values."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class RunRecord:
    """One run as the ledger remembers it."""

    id: int
    started_at: str
    finished_at: str | None
    as_of: str
    status: str
    counts: Mapping[str, Any]
    message: str | None

    def as_dict(self) -> dict[str, Any]:
        """Return the run as JSON-ready values."""
        return {
            "id": self.id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "as_of": self.as_of,
            "status": self.status,
            "counts": dict(self.counts),
            "message": self.message,
        }


def fields_hash(fields: Mapping[str, Any]) -> str:
    """Return a stable hash of a change's fields."""
    encoded = orjson.dumps(dict(fields), option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(encoded).hexdigest()[:32]


def _fields_json(fields: Mapping[str, Any] | None) -> str | None:
    if fields is None:
        return None
    return orjson.dumps(dict(fields), option=orjson.OPT_SORT_KEYS, default=str).decode()


def now_text() -> str:
    """Return the current UTC time as the ledger writes times."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Ledger:
    """The SQLite ledger. Thread-safe: one connection, guarded by a lock."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self.path = path
        self._db = connection
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Ledger:
        """Open (creating and migrating as needed) the ledger at `path`.

        Raises:
            LedgerError: When the file cannot be opened or is too new.
        """
        file = Path(path)
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            if not file.exists():
                # Create it owner-only before SQLite writes anything into it.
                os.close(os.open(file, os.O_CREAT | os.O_WRONLY, 0o600))
            connection = sqlite3.connect(
                file, isolation_level=None, check_same_thread=False, timeout=30
            )
        except (OSError, sqlite3.Error) as exc:
            msg = f"The ledger {str(file)!r} cannot be opened: {exc}."
            raise LedgerError(msg) from exc
        ledger = cls(connection, file)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            ledger._migrate()
        except sqlite3.Error as exc:
            connection.close()
            msg = f"The ledger {str(file)!r} cannot be opened: {exc}."
            raise LedgerError(msg) from exc
        except BaseException:
            # A refused ledger must not stay open (and locked) behind the error.
            connection.close()
            raise
        return ledger

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block's statements as one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self.transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                msg = (
                    f"The ledger {str(self.path)!r} has schema version {version}, "
                    f"newer than this pqlhub's {SCHEMA_VERSION}. Upgrade pqlhub."
                )
                raise LedgerError(msg)
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _statements(_MIGRATIONS[step]):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {step}")

    @property
    def schema_version(self) -> int:
        """The schema version of the open ledger."""
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # --------------------------------------------------------------------- runs

    def start_run(self, as_of: datetime) -> int:
        """Record a run's start; return its id."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO runs (started_at, as_of, status) VALUES (?, ?, 'running')",
                (now_text(), as_of.isoformat()),
            )
            return int(cursor.lastrowid or 0)

    def finish_run(
        self, run_id: int, status: str, counts: Mapping[str, Any], message: str | None
    ) -> None:
        """Record a run's end, its status and its counts."""
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, status = ?, counts = ?, message = ?"
                " WHERE id = ?",
                (
                    now_text(),
                    status,
                    orjson.dumps(dict(counts)).decode(),
                    message,
                    run_id,
                ),
            )

    def runs(self, limit: int = 20) -> list[RunRecord]:
        """Return the latest runs, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, started_at, finished_at, as_of, status, counts, message"
                " FROM runs ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            RunRecord(r[0], r[1], r[2], r[3], r[4], orjson.loads(r[5]), r[6])
            for r in rows
        ]

    # --------------------------------------------------------------- membership

    def open_stints(self) -> dict[tuple[str, str], str]:
        """Return `(segment, contact) -> entered_at` for every current member."""
        with self._lock:
            rows = self._db.execute(
                "SELECT segment, contact, entered_at FROM membership"
                " WHERE left_at IS NULL"
            )
            return {(segment, contact): entered for segment, contact, entered in rows}

    def stint_counts(self) -> dict[tuple[str, str], int]:
        """Return how many stints (current or past) each `(segment, contact)` had."""
        with self._lock:
            rows = self._db.execute(
                "SELECT segment, contact, COUNT(*) FROM membership"
                " GROUP BY segment, contact"
            )
            return {(segment, contact): count for segment, contact, count in rows}

    def record_membership(
        self,
        entered: Iterable[tuple[str, str, str]],
        left: Iterable[tuple[str, str]],
        at: str,
    ) -> None:
        """Open stints for `(segment_id, segment, contact)` and close others.

        Args:
            entered: Members new since the last run, with their segment's id.
            left: `(segment, contact)` pairs no longer members.
            at: The time to record.
        """
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO membership (segment_id, segment, contact, entered_at)"
                " VALUES (?, ?, ?, ?)",
                ((sid, segment, contact, at) for sid, segment, contact in entered),
            )
            db.executemany(
                "UPDATE membership SET left_at = ?"
                " WHERE segment = ? AND contact = ? AND left_at IS NULL",
                ((at, segment, contact) for segment, contact in left),
            )

    def history(self, contact: str) -> list[tuple[str, str, str | None]]:
        """Return a contact's `(segment, entered_at, left_at)` stints, oldest first."""
        with self._lock:
            return list(
                self._db.execute(
                    "SELECT segment, entered_at, left_at FROM membership"
                    " WHERE contact = ? ORDER BY entered_at, segment",
                    (contact,),
                )
            )

    # ---------------------------------------------------------------- confirmed

    def sync_started(self, sync: str) -> bool:
        """Return whether the sync has run (or been baselined) before."""
        with self._lock:
            row = self._db.execute("SELECT 1 FROM syncs WHERE name = ?", (sync,))
            return row.fetchone() is not None

    def mark_sync_started(self, sync: str, destination: str) -> None:
        """Remember that the sync has started delivering."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO syncs (name, destination, started_at)"
                " VALUES (?, ?, ?)",
                (sync, destination, now_text()),
            )

    def confirmed(self, sync: str) -> dict[tuple[str, str], Confirmed]:
        """Return `(segment, contact) -> Confirmed` for everything the sync holds."""
        with self._lock:
            rows = self._db.execute(
                "SELECT segment, contact, fields_hash, remote_id, version"
                " FROM confirmed WHERE sync = ?",
                (sync,),
            )
            return {(s, c): Confirmed(h, r, v) for s, c, h, r, v in rows}

    def exit_counts(self, sync: str) -> dict[tuple[str, str], int]:
        """Return how many exits of each `(segment, contact)` the sync delivered."""
        with self._lock:
            rows = self._db.execute(
                "SELECT segment, contact, exits FROM sync_exits WHERE sync = ?",
                (sync,),
            )
            return {(segment, contact): exits for segment, contact, exits in rows}

    def baseline(
        self,
        sync: str,
        destination: str,
        held: Iterable[tuple[str, str, Mapping[str, Any]]],
    ) -> int:
        """Record `(segment, contact, fields)` as already held, sending nothing."""
        at = now_text()
        rows = [
            (sync, contact, segment, fields_hash(fields), _fields_json(fields), at)
            for segment, contact, fields in held
        ]
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO confirmed"
                " (sync, contact, segment, fields_hash, fields, confirmed_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.execute(
                "INSERT OR IGNORE INTO syncs (name, destination, started_at)"
                " VALUES (?, ?, ?)",
                (sync, destination, at),
            )
        return len(rows)

    def sent_fields(
        self, sync: str, pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Return the fields last sent for each `(segment, contact)` given."""
        wanted = set(pairs)
        if not wanted:
            return {}
        with self._lock:
            rows = self._db.execute(
                "SELECT segment, contact, fields FROM confirmed"
                " WHERE sync = ? AND fields IS NOT NULL",
                (sync,),
            ).fetchall()
        return {
            (segment, contact): orjson.loads(fields)
            for segment, contact, fields in rows
            if (segment, contact) in wanted
        }

    def forget(self, sync: str, pairs: Iterable[tuple[str, str]]) -> None:
        """Drop `(segment, contact)` pairs from what the sync holds, sending nothing."""
        with self.transaction() as db:
            db.executemany(
                "DELETE FROM confirmed WHERE sync = ? AND segment = ? AND contact = ?",
                ((sync, segment, contact) for segment, contact in pairs),
            )

    def commit_outcomes(
        self, sync: str, run_id: int, outcomes: Sequence[Settled]
    ) -> None:
        """Record one batch's outcomes in a single transaction."""
        at = now_text()
        with self.transaction() as db:
            for settled in outcomes:
                self._settle(db, sync, run_id, settled, at)

    def _settle(
        self, db: sqlite3.Connection, sync: str, run_id: int, item: Settled, at: str
    ) -> None:
        key = (sync, item.segment, item.contact)
        if item.status in ("done", "skipped"):
            if item.change == "exit":
                db.execute(
                    "INSERT INTO sync_exits (sync, segment, contact, exits)"
                    " VALUES (?, ?, ?, 1) ON CONFLICT (sync, segment, contact)"
                    " DO UPDATE SET exits = exits + 1",
                    key,
                )
                db.execute(
                    "DELETE FROM confirmed"
                    " WHERE sync = ? AND segment = ? AND contact = ?",
                    key,
                )
            else:
                db.execute(
                    "INSERT INTO confirmed (sync, contact, segment,"
                    " fields_hash, remote_id, confirmed_at, run_id, fields)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (sync, segment, contact) DO UPDATE SET"
                    " fields_hash = excluded.fields_hash,"
                    " remote_id = COALESCE(excluded.remote_id, remote_id),"
                    " confirmed_at = excluded.confirmed_at,"
                    " run_id = excluded.run_id, fields = excluded.fields,"
                    " version = version + 1",
                    (
                        sync,
                        item.contact,
                        item.segment,
                        item.fields_hash,
                        item.remote_id,
                        at,
                        run_id,
                        _fields_json(item.fields),
                    ),
                )
            db.execute(
                "DELETE FROM failures WHERE sync = ? AND segment = ? AND contact = ?",
                key,
            )
            return
        row = db.execute(
            "SELECT attempts, first_failed_at FROM failures"
            " WHERE sync = ? AND segment = ? AND contact = ?",
            key,
        ).fetchone()
        attempts = (row[0] if row else 0) + 1
        first = row[1] if row else at
        db.execute(
            "INSERT OR REPLACE INTO failures (sync, contact, segment, change,"
            " change_id, action, kind, reason, attempts, first_failed_at,"
            " last_failed_at, dead)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (sync, item.contact, item.segment, item.change, item.change_id,
             item.action, item.kind or "transient", item.reason or "", attempts,
             first, at, int(attempts >= item.max_attempts)),
        )  # fmt: skip

    # ----------------------------------------------------------------- failures

    def failures(
        self, sync: str | None = None, dead: bool | None = None
    ) -> list[Failure]:
        """Return failed changes, optionally of one sync, dead or not."""
        query = (
            "SELECT sync, contact, segment, change, change_id, action, kind, reason,"
            " attempts, first_failed_at, last_failed_at, dead FROM failures WHERE 1=1"
        )
        args: list[Any] = []
        if sync is not None:
            query += " AND sync = ?"
            args.append(sync)
        if dead is not None:
            query += " AND dead = ?"
            args.append(int(dead))
        query += " ORDER BY sync, segment, contact"
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [_failure(row) for row in rows]

    def dead_letters(self, sync: str) -> set[tuple[str, str]]:
        """Return `(segment, contact)` of the sync's dead letters."""
        return {(f.segment, f.contact) for f in self.failures(sync, dead=True)}

    def requeue(self, sync: str | None = None) -> int:
        """Turn dead letters back into pending changes; return how many."""
        query = "UPDATE failures SET dead = 0, attempts = 0 WHERE dead = 1"
        args: tuple[str, ...] = ()
        if sync is not None:
            query += " AND sync = ?"
            args = (sync,)
        with self.transaction() as db:
            return db.execute(query, args).rowcount

    # ------------------------------------------------------------------ cursors

    def cursor(self, source: str) -> Any:
        """Return the committed cursor of a source, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT cursor FROM cursors WHERE source = ?", (source,)
            ).fetchone()
        return orjson.loads(row[0]) if row else None

    def set_cursor(self, source: str, cursor: Any) -> None:
        """Commit a source's cursor."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO cursors (source, cursor, updated_at)"
                " VALUES (?, ?, ?)",
                (source, orjson.dumps(cursor).decode(), now_text()),
            )

    # -------------------------------------------------------- destination state

    def state(self, destination: str) -> DestinationState:
        """Return the destination's persistent key-value state."""
        return DestinationState(self, destination)


@dataclass(frozen=True)
class Settled:
    """One change's outcome, as the ledger records it."""

    contact: str
    segment: str
    change: str
    change_id: str
    action: str
    status: str
    fields_hash: str
    remote_id: str | None = None
    kind: str | None = None
    reason: str | None = None
    max_attempts: int = 3
    fields: Mapping[str, Any] | None = None


class DestinationState(StateStore):
    """A destination's key-value state, written through to the ledger.

    Reads of one key and writes are single statements; `update` and `get_many`
    handle many keys in one statement each, for caches of remote ids.
    """

    def __init__(self, ledger: Ledger, destination: str) -> None:
        self._ledger = ledger
        self._destination = destination

    def __getitem__(self, key: str) -> str:
        with self._ledger._lock:
            row = self._ledger._db.execute(
                "SELECT value FROM destination_state WHERE destination = ? AND key = ?",
                (self._destination, key),
            ).fetchone()
        if row is None:
            raise KeyError(key)
        return str(row[0])

    def __setitem__(self, key: str, value: str) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        with self._ledger.transaction() as db:
            db.execute(
                "DELETE FROM destination_state WHERE destination = ? AND key = ?",
                (self._destination, key),
            )

    def update(self, other: Any = (), /, **extra: str) -> None:
        """Write many keys in one transaction."""
        items = dict(other, **extra)
        with self._ledger.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO destination_state (destination, key, value)"
                " VALUES (?, ?, ?)",
                ((self._destination, key, value) for key, value in items.items()),
            )

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """Return the values of those `keys` that are set."""
        wanted = sorted(set(keys))
        found: dict[str, str] = {}
        with self._ledger._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                rows = self._ledger._db.execute(
                    "SELECT key, value FROM destination_state"
                    f" WHERE destination = ? AND key IN ({marks})",
                    (self._destination, *chunk),
                )
                found.update(rows.fetchall())
        return found

    def __iter__(self) -> Iterator[str]:
        with self._ledger._lock:
            rows = self._ledger._db.execute(
                "SELECT key FROM destination_state WHERE destination = ?",
                (self._destination,),
            ).fetchall()
        return iter([row[0] for row in rows])

    def __len__(self) -> int:
        with self._ledger._lock:
            row = self._ledger._db.execute(
                "SELECT COUNT(*) FROM destination_state WHERE destination = ?",
                (self._destination,),
            ).fetchone()
        return int(row[0])


def _failure(row: Sequence[Any]) -> Failure:
    return Failure(
        sync=row[0],
        contact=row[1],
        segment=row[2],
        change=row[3],
        change_id=row[4],
        action=row[5],
        kind=row[6],
        reason=row[7],
        attempts=row[8],
        first_failed_at=row[9],
        last_failed_at=row[10],
        dead=bool(row[11]),
    )


def _statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]
