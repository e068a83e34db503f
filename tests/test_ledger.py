"""The ledger: its file and schema, runs, membership, confirmed pairs and failures."""

from __future__ import annotations

import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pqlhub.ledger import (
    _MIGRATIONS,
    SCHEMA_VERSION,
    Confirmed,
    Ledger,
    LedgerError,
    Settled,
    fields_hash,
)

AS_OF = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "ledger.db") as opened:
        yield opened


def _settled(
    contact: str,
    status: str = "done",
    change: str = "enter",
    segment: str = "qualified",
    **extra: Any,
) -> Settled:
    return Settled(
        contact=contact,
        segment=segment,
        change=change,
        change_id=f"id-{contact}-{change}",
        action="add_to_list",
        status=status,
        fields_hash=extra.pop("fields_hash", "h1"),
        **extra,
    )


# ---------------------------------------------------------------- file and schema


def test_ledger_is_created_owner_only_in_a_fresh_folder(tmp_path: Path) -> None:
    path = tmp_path / "state" / "nested" / "ledger.db"

    with Ledger.open(path) as ledger:
        ledger.start_run(AS_OF)
        # The WAL files exist only while the ledger is open.
        modes = {
            file.name: stat.S_IMODE(file.stat().st_mode)
            for file in path.parent.glob("ledger.db*")
        }

    assert path.is_file()
    assert modes == dict.fromkeys(
        ["ledger.db", "ledger.db-shm", "ledger.db-wal"], 0o600
    )


def test_ledger_schema_version_is_current(ledger: Ledger) -> None:
    with closing(sqlite3.connect(ledger.path)) as other:
        version = other.execute("PRAGMA user_version").fetchone()[0]

    assert version == SCHEMA_VERSION == 2
    assert ledger.schema_version == 2


def test_ledger_of_version_1_is_migrated_forward(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with closing(sqlite3.connect(path)) as old:
        for statement in _MIGRATIONS[1].split(";"):
            if statement.strip():
                old.execute(statement)
        old.execute(
            "INSERT INTO confirmed (sync, contact, segment, fields_hash, confirmed_at)"
            " VALUES ('crm', 'ann', 'qualified', 'h1', '2026-06-01')"
        )
        old.execute("PRAGMA user_version = 1")
        old.commit()

    with Ledger.open(path) as ledger:
        assert ledger.schema_version == 2
        assert ledger.confirmed("crm") == {("qualified", "ann"): Confirmed("h1", None)}
        assert ledger.exit_counts("crm") == {}


def test_ledger_newer_than_pqlhub_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.db"
    with closing(sqlite3.connect(path)) as newer:
        newer.execute("PRAGMA user_version = 7")
    opened: list[sqlite3.Connection] = []
    connect = sqlite3.connect

    def recording_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(connect(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(sqlite3, "connect", recording_connect)

    with pytest.raises(LedgerError, match=r"schema version 7, newer than .*'s 2\."):
        Ledger.open(path)

    monkeypatch.undo()
    with closing(sqlite3.connect(path)) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == 7
    # The refused ledger's connection is closed, not left open.
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        opened[0].execute("SELECT 1")


def test_ledger_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.write_text("this is not a database, just text " * 100)

    with pytest.raises(LedgerError, match=r"ledger\.db' cannot be opened: "):
        Ledger.open(path)


def test_ledger_migration_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as first:
        first.set_cursor("product", {"after": 10})

    with Ledger.open(path) as second:
        assert second.schema_version == 2
        assert second.cursor("product") == {"after": 10}


# -------------------------------------------------------------------------- runs


def test_ledger_runs_start_finish_and_list_newest_first(ledger: Ledger) -> None:
    first = ledger.start_run(AS_OF)
    ledger.finish_run(first, "complete", {"added": 3, "removed": 1}, None)
    second = ledger.start_run(AS_OF)

    newest, oldest = ledger.runs()

    assert (newest.id, newest.status, newest.finished_at) == (second, "running", None)
    assert oldest.id == first
    assert oldest.status == "complete"
    assert oldest.counts == {"added": 3, "removed": 1}
    assert oldest.as_of == AS_OF.isoformat()
    assert oldest.finished_at is not None
    assert ledger.runs(limit=1) == [newest]


def test_ledger_failed_run_keeps_its_message(ledger: Ledger) -> None:
    run = ledger.start_run(AS_OF)
    ledger.finish_run(run, "failed", {}, "crm refused the request.")

    [record] = ledger.runs()

    assert record.status == "failed"
    assert record.message == "crm refused the request."


# -------------------------------------------------------------------- membership


def test_ledger_membership_stints_open_and_close(ledger: Ledger) -> None:
    ledger.record_membership(
        [("q", "qualified", "ann"), ("q", "qualified", "bob")], [], "2026-06-01T00"
    )
    ledger.record_membership([], [("qualified", "bob")], "2026-06-02T00")

    assert ledger.open_stints() == {("qualified", "ann"): "2026-06-01T00"}
    assert ledger.stint_counts() == {("qualified", "ann"): 1, ("qualified", "bob"): 1}
    assert ledger.history("bob") == [("qualified", "2026-06-01T00", "2026-06-02T00")]


def test_ledger_membership_reentry_opens_a_new_stint(ledger: Ledger) -> None:
    ledger.record_membership([("q", "qualified", "bob")], [], "2026-06-01T00")
    ledger.record_membership([], [("qualified", "bob")], "2026-06-02T00")
    ledger.record_membership([("q", "qualified", "bob")], [], "2026-06-03T00")
    ledger.record_membership([], [("qualified", "bob")], "2026-06-04T00")
    ledger.record_membership([("q", "qualified", "bob")], [], "2026-06-05T00")

    assert ledger.open_stints() == {("qualified", "bob"): "2026-06-05T00"}
    assert ledger.stint_counts() == {("qualified", "bob"): 3}
    assert ledger.history("bob") == [
        ("qualified", "2026-06-01T00", "2026-06-02T00"),
        ("qualified", "2026-06-03T00", "2026-06-04T00"),
        ("qualified", "2026-06-05T00", None),
    ]


def test_ledger_history_of_nobody_is_empty(ledger: Ledger) -> None:
    assert ledger.stint_counts() == {}
    assert ledger.history("nobody") == []


# --------------------------------------------------------------------- confirmed


def test_ledger_baseline_records_pairs_and_starts_the_sync(ledger: Ledger) -> None:
    assert not ledger.sync_started("crm-sync")

    ann, bob = {"email": "ann@acme.test"}, {"email": "bob@acme.test"}
    count = ledger.baseline(
        "crm-sync", "crm", [("qualified", "ann", ann), ("qualified", "bob", bob)]
    )

    assert count == 2
    assert ledger.sync_started("crm-sync")
    assert ledger.confirmed("crm-sync") == {
        ("qualified", "ann"): Confirmed(fields_hash(ann), None),
        ("qualified", "bob"): Confirmed(fields_hash(bob), None),
    }
    assert ledger.sent_fields("crm-sync", [("qualified", "bob")]) == {
        ("qualified", "bob"): bob
    }
    assert ledger.confirmed("other-sync") == {}


def test_ledger_forget_drops_pairs_of_one_sync(ledger: Ledger) -> None:
    held = [("qualified", "ann", {"n": 1}), ("qualified", "bob", {"n": 2})]
    ledger.baseline("crm-sync", "crm", held)
    ledger.baseline("ads-sync", "ads", held)

    ledger.forget("crm-sync", [("qualified", "ann")])

    assert set(ledger.confirmed("crm-sync")) == {("qualified", "bob")}
    assert len(ledger.confirmed("ads-sync")) == 2


def test_ledger_mark_sync_started_is_idempotent(ledger: Ledger) -> None:
    ledger.mark_sync_started("crm-sync", "crm")
    ledger.mark_sync_started("crm-sync", "crm")

    assert ledger.sync_started("crm-sync")


# -------------------------------------------------------------- commit_outcomes


def test_ledger_done_enter_and_update_upsert_confirmed(ledger: Ledger) -> None:
    run = ledger.start_run(AS_OF)
    ledger.commit_outcomes("crm-sync", run, [_settled("ann", remote_id="501")])
    ledger.commit_outcomes(
        "crm-sync",
        run,
        [
            _settled("ann", change="update", fields_hash="h2"),
            _settled("bob", status="skipped"),
        ],
    )

    # The update said no remote id; the one the enter confirmed is kept.
    assert ledger.confirmed("crm-sync") == {
        ("qualified", "ann"): Confirmed("h2", "501"),
        ("qualified", "bob"): Confirmed("h1", None),
    }


def test_ledger_done_exit_deletes_confirmed(ledger: Ledger) -> None:
    run = ledger.start_run(AS_OF)
    ledger.commit_outcomes("crm-sync", run, [_settled("ann"), _settled("bob")])

    ledger.commit_outcomes("crm-sync", run, [_settled("ann", change="exit")])

    assert set(ledger.confirmed("crm-sync")) == {("qualified", "bob")}


def test_ledger_failures_count_attempts_and_die_at_max(ledger: Ledger) -> None:
    run = ledger.start_run(AS_OF)
    failing = _settled(
        "ann", status="retry", kind="transient", reason="HTTP 503", max_attempts=3
    )

    ledger.commit_outcomes("crm-sync", run, [failing])
    [first] = ledger.failures("crm-sync")
    ledger.commit_outcomes("crm-sync", run, [failing])
    [second] = ledger.failures("crm-sync")
    ledger.commit_outcomes("crm-sync", run, [failing])
    [third] = ledger.failures("crm-sync")

    assert (first.attempts, first.dead) == (1, False)
    assert (second.attempts, second.dead) == (2, False)
    assert (third.attempts, third.dead) == (3, True)
    assert third.first_failed_at == first.first_failed_at
    assert third.last_failed_at >= second.last_failed_at
    assert (third.kind, third.reason, third.action) == (
        "transient",
        "HTTP 503",
        "add_to_list",
    )
    assert ledger.dead_letters("crm-sync") == {("qualified", "ann")}
    assert ledger.confirmed("crm-sync") == {}


def test_ledger_failed_without_kind_or_reason_defaults(ledger: Ledger) -> None:
    ledger.commit_outcomes("crm-sync", 1, [_settled("ann", status="failed")])

    [failure] = ledger.failures()

    assert failure.kind == "transient"
    assert failure.reason == ""
    assert failure.as_dict()["change_id"] == "id-ann-enter"


def test_ledger_done_clears_a_failure(ledger: Ledger) -> None:
    run = ledger.start_run(AS_OF)
    ledger.commit_outcomes("crm-sync", run, [_settled("ann", status="retry")])

    ledger.commit_outcomes("crm-sync", run, [_settled("ann")])

    assert ledger.failures() == []
    assert set(ledger.confirmed("crm-sync")) == {("qualified", "ann")}


def test_ledger_commit_outcomes_is_one_transaction(ledger: Ledger) -> None:
    run = ledger.start_run(AS_OF)
    broken = _settled(None, status="done")  # type: ignore[arg-type]

    with pytest.raises(sqlite3.IntegrityError):
        ledger.commit_outcomes("crm-sync", run, [_settled("ann"), broken])

    assert ledger.confirmed("crm-sync") == {}
    ledger.commit_outcomes("crm-sync", run, [_settled("ann")])
    assert set(ledger.confirmed("crm-sync")) == {("qualified", "ann")}


# ---------------------------------------------------------------------- failures


@pytest.fixture
def failed(ledger: Ledger) -> Ledger:
    """A ledger with one dead and one pending failure in each of two syncs."""
    for sync in ("ads-sync", "crm-sync"):
        ledger.commit_outcomes(
            sync,
            1,
            [
                _settled("ann", status="failed", kind="data", max_attempts=1),
                _settled("bob", status="retry", max_attempts=3),
            ],
        )
    return ledger


def test_ledger_failures_filter_by_sync_and_dead(failed: Ledger) -> None:
    everything = failed.failures()
    crm = failed.failures("crm-sync")
    dead = failed.failures(dead=True)
    crm_pending = failed.failures("crm-sync", dead=False)

    assert [(f.sync, f.contact) for f in everything] == [
        ("ads-sync", "ann"),
        ("ads-sync", "bob"),
        ("crm-sync", "ann"),
        ("crm-sync", "bob"),
    ]
    assert {f.sync for f in crm} == {"crm-sync"}
    assert {(f.sync, f.contact) for f in dead} == {
        ("ads-sync", "ann"),
        ("crm-sync", "ann"),
    }
    assert [(f.contact, f.dead) for f in crm_pending] == [("bob", False)]


def test_ledger_requeue_revives_dead_letters_of_one_sync(failed: Ledger) -> None:
    revived = failed.requeue("crm-sync")

    assert revived == 1
    assert failed.dead_letters("crm-sync") == set()
    assert failed.dead_letters("ads-sync") == {("qualified", "ann")}
    [ann] = [f for f in failed.failures("crm-sync") if f.contact == "ann"]
    assert (ann.attempts, ann.dead) == (0, False)


def test_ledger_requeue_everything(failed: Ledger) -> None:
    assert failed.requeue() == 2
    assert failed.failures(dead=True) == []
    assert failed.requeue() == 0


# ---------------------------------------------------------- cursors and state


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param({"after": "2026-06-01T00:00:00Z", "page": 3}, id="object"),
        pytest.param("etag-123", id="text"),
        pytest.param(42, id="number"),
    ],
)
def test_ledger_cursor_round_trips(ledger: Ledger, cursor: Any) -> None:
    assert ledger.cursor("product") is None

    ledger.set_cursor("product", {"old": True})
    ledger.set_cursor("product", cursor)

    assert ledger.cursor("product") == cursor
    assert ledger.cursor("billing") is None


def test_ledger_destination_state_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as ledger:
        state = ledger.state("crm")
        state["list_id"] = "77"
        state["property"] = "pql_segments"
        state["property"] = "pqlhub_segments"
        del state["list_id"]
        ledger.state("ads")["audience"] = "a-1"

    with Ledger.open(path) as reopened:
        state = reopened.state("crm")
        assert dict(state) == {"property": "pqlhub_segments"}
        assert len(state) == 1
        assert "list_id" not in state
        with pytest.raises(KeyError):
            state["list_id"]
        assert dict(reopened.state("ads")) == {"audience": "a-1"}


# ------------------------------------------------------------------- threads


def test_ledger_commits_from_many_threads(ledger: Ledger) -> None:
    errors: list[BaseException] = []

    def deliver(worker: int) -> None:
        try:
            run = ledger.start_run(AS_OF)
            for batch in range(10):
                outcomes = [
                    _settled(f"c{worker}-{batch}-{i}", segment=f"s{worker}")
                    for i in range(5)
                ]
                ledger.commit_outcomes("crm-sync", run, outcomes)
                ledger.confirmed("crm-sync")
            ledger.finish_run(run, "complete", {"done": 50}, None)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(ledger.confirmed("crm-sync")) == 8 * 10 * 5
    assert [run.status for run in ledger.runs()] == ["complete"] * 8
