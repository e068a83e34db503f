"""The plan: adds, removes and updates against the ledger, and its guard rails."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pqlhub.ledger import Ledger, Settled
from pqlhub.plan import ActionCall, SyncPlan, SyncSpec, fields_hash, make_plan
from pqlhub.profiles import Identity, ProfileTable, TableBuilder
from pqlhub.segments import Segment

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)

CONTACTS = [
    {"id": f"c{n:02}", "email": f"c{n:02}@acme.test", "plan": "free"} for n in range(10)
]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "ledger.db") as opened:
        yield opened


def _table(contacts: Sequence[Mapping[str, Any]] = CONTACTS) -> ProfileTable:
    builder = TableBuilder(
        Identity(account_from_email=False),
        contact_fields=frozenset({"email", "plan"}),
        account_fields=frozenset(),
    )
    builder.add_contacts(contacts, key="id")
    return builder.finish()


def _segment(
    name: str,
    members: Sequence[str],
    id: str | None = None,
    min_size: int = 0,
) -> Segment:
    return Segment(
        id=id or name,
        name=name,
        template=name,
        values={},
        members=tuple(sorted(members)),
        min_size=min_size,
        enforce_min_size=True,
    )


def _spec(*selectors: str, **options: Any) -> SyncSpec:
    options.setdefault("on_exit", ActionCall("remove_from_list", {}))
    return SyncSpec(
        name="crm-sync",
        destination="crm",
        selectors=selectors or ("qualified",),
        on_enter=ActionCall("add_to_list", {"list": "PQLs"}),
        fields={"email": "email", "plan": "plan"},
        **options,
    )


def _plan(
    ledger: Ledger,
    segments: Sequence[Segment],
    spec: SyncSpec | None = None,
    table: ProfileTable | None = None,
    force: bool = False,
) -> SyncPlan:
    spec = spec or _spec()
    made = make_plan([spec], segments, table or _table(), ledger, AS_OF, force=force)
    [sync_plan] = made.syncs
    return sync_plan


def _deliver(ledger: Ledger, sync_plan: SyncPlan) -> None:
    """Settle every change of the plan as done, as a sync would."""
    ledger.commit_outcomes(
        sync_plan.sync,
        1,
        [
            Settled(
                contact=change.key,
                segment=change.segment,
                change=change.kind,
                change_id=change.id,
                action="add_to_list",
                status="done",
                fields_hash=fields_hash(change.fields),
            )
            for change in sync_plan.changes
        ],
    )


def _members(n: int) -> list[str]:
    return [f"c{i:02}" for i in range(n)]


def _keys(changes: Sequence[Any]) -> list[tuple[str, str]]:
    return [(change.segment, change.key) for change in changes]


# ------------------------------------------------------------------ the diff


def test_plan_adds_every_member_on_a_first_send_all_run(ledger: Ledger) -> None:
    sync_plan = _plan(ledger, [_segment("qualified", ["c01", "c00"])])

    assert _keys(sync_plan.adds) == [("qualified", "c00"), ("qualified", "c01")]
    assert sync_plan.adds[0].kind == "enter"
    assert sync_plan.adds[0].fields == {"email": "c00@acme.test", "plan": "free"}
    assert sync_plan.removes == sync_plan.updates == []
    assert sync_plan.holding == 0
    assert sync_plan.blocked is None


def test_plan_is_empty_once_the_destination_holds_everyone(ledger: Ledger) -> None:
    segments = [_segment("qualified", ["c00", "c01"])]
    _deliver(ledger, _plan(ledger, segments))

    sync_plan = _plan(ledger, segments)

    assert sync_plan.changes == []
    assert sync_plan.holding == 2


def test_plan_updates_members_whose_fields_changed(ledger: Ledger) -> None:
    segments = [_segment("qualified", ["c00", "c01"])]
    _deliver(ledger, _plan(ledger, segments))
    upgraded = [dict(c, plan="pro") if c["id"] == "c01" else c for c in CONTACTS]

    sync_plan = _plan(ledger, segments, table=_table(upgraded))

    assert _keys(sync_plan.updates) == [("qualified", "c01")]
    assert sync_plan.updates[0].kind == "update"
    assert sync_plan.updates[0].fields["plan"] == "pro"
    assert sync_plan.adds == sync_plan.removes == []


def test_plan_removes_contacts_that_left(ledger: Ledger) -> None:
    _deliver(ledger, _plan(ledger, [_segment("qualified", _members(10))]))

    sync_plan = _plan(ledger, [_segment("qualified", _members(9))])

    assert _keys(sync_plan.removes) == [("qualified", "c09")]
    assert sync_plan.removes[0].kind == "exit"
    assert sync_plan.removes[0].fields == {}
    assert sync_plan.blocked is None


def test_plan_changes_list_adds_then_updates_then_removes(ledger: Ledger) -> None:
    _deliver(ledger, _plan(ledger, [_segment("qualified", ["c00", "c01"])]))
    upgraded = [dict(c, plan="pro") if c["id"] == "c01" else c for c in CONTACTS]
    segments = [_segment("qualified", ["c01", "c02"])]

    sync_plan = _plan(ledger, segments, _spec(max_remove=1.0), _table(upgraded))

    assert [(c.kind, c.key) for c in sync_plan.changes] == [
        ("enter", "c02"),
        ("update", "c01"),
        ("exit", "c00"),
    ]
    assert sync_plan.as_dict()["sample"] == {
        "add": ["c02"],
        "remove": ["c00"],
        "update": ["c01"],
    }


# ------------------------------------------------------------------- selectors


@pytest.fixture
def by_plan() -> list[Segment]:
    """Two expansions of one template, and one other segment."""
    return [
        _segment("pql_free", ["c00"], id="pql_by_plan"),
        _segment("pql_pro", ["c01"], id="pql_by_plan"),
        _segment("churn_risk", ["c02"]),
    ]


@pytest.mark.parametrize(
    ("selector", "picked"),
    [
        pytest.param("pql_by_plan", {"pql_free", "pql_pro"}, id="by-id"),
        pytest.param("pql_pro", {"pql_pro"}, id="by-name"),
        pytest.param("pql_*", {"pql_free", "pql_pro"}, id="by-glob"),
        pytest.param("*_risk", {"churn_risk"}, id="by-glob-suffix"),
        pytest.param("pql_[f]ree", {"pql_free"}, id="by-glob-class"),
    ],
)
def test_plan_selectors_pick_segments(
    ledger: Ledger, by_plan: list[Segment], selector: str, picked: set[str]
) -> None:
    sync_plan = _plan(ledger, by_plan, _spec(selector))

    assert {change.segment for change in sync_plan.adds} == picked
    assert sync_plan.unmatched == []


def test_plan_name_without_glob_characters_is_matched_exactly(
    ledger: Ledger, by_plan: list[Segment]
) -> None:
    sync_plan = _plan(ledger, by_plan, _spec("pql"))

    assert sync_plan.adds == []
    assert sync_plan.unmatched == ["pql"]


def test_plan_lists_unmatched_selectors(ledger: Ledger, by_plan: list[Segment]) -> None:
    sync_plan = _plan(ledger, by_plan, _spec("pql_pro", "nope", "trial_*"))

    assert sync_plan.unmatched == ["nope", "trial_*"]
    assert sync_plan.as_dict()["unmatched_selectors"] == ["nope", "trial_*"]
    assert _keys(sync_plan.adds) == [("pql_pro", "c01")]


# ----------------------------------------------------------------- guard rails


def test_plan_freezes_held_back_segments(ledger: Ledger) -> None:
    _deliver(ledger, _plan(ledger, [_segment("qualified", ["c00", "c01", "c02"])]))
    # Now below its minimum of 3: neither c02's exit nor c03's entry is planned.
    shrunk = _segment("qualified", ["c00", "c03"], min_size=3)

    sync_plan = _plan(ledger, [shrunk])

    assert shrunk.held_back
    assert sync_plan.held_back == ["qualified"]
    assert sync_plan.changes == []
    assert sync_plan.holding == 3


def test_plan_freezes_only_the_held_back_segment(ledger: Ledger) -> None:
    first = [_segment("qualified", ["c00", "c01"]), _segment("trial", ["c02"])]
    _deliver(ledger, _plan(ledger, first, _spec("qualified", "trial")))
    later = [
        _segment("qualified", ["c00"], min_size=2),
        _segment("trial", ["c03"]),
    ]

    sync_plan = _plan(ledger, later, _spec("qualified", "trial", max_remove=1.0))

    assert sync_plan.held_back == ["qualified"]
    assert _keys(sync_plan.adds) == [("trial", "c03")]
    assert _keys(sync_plan.removes) == [("trial", "c02")]


def test_plan_leaves_dead_letters_out(ledger: Ledger) -> None:
    segments = [_segment("qualified", ["c00", "c01"])]
    ledger.commit_outcomes(
        "crm-sync",
        1,
        [
            Settled(
                contact="c00",
                segment="qualified",
                change="enter",
                change_id="x",
                action="add_to_list",
                status="failed",
                fields_hash="h",
                kind="data",
                max_attempts=1,
            )
        ],
    )

    sync_plan = _plan(ledger, segments)

    assert _keys(sync_plan.adds) == [("qualified", "c01")]
    assert sync_plan.dead_letters == 1


def test_plan_leaves_a_dead_exit_out(ledger: Ledger) -> None:
    _deliver(ledger, _plan(ledger, [_segment("qualified", ["c00", "c01"])]))
    dead_exit = Settled(
        "c01", "qualified", "exit", "x", "remove", "retry", "h", max_attempts=1
    )
    ledger.commit_outcomes("crm-sync", 1, [dead_exit])

    sync_plan = _plan(ledger, [_segment("qualified", ["c00"])])

    assert sync_plan.removes == []
    assert sync_plan.dead_letters == 1


@pytest.fixture
def holding_ten(ledger: Ledger) -> Ledger:
    """A ledger whose `crm-sync` holds c00..c09 in `qualified`."""
    _deliver(ledger, _plan(ledger, [_segment("qualified", _members(10))]))
    return ledger


def test_plan_removal_guard_blocks_above_max_remove(holding_ten: Ledger) -> None:
    sync_plan = _plan(holding_ten, [_segment("qualified", _members(7))])

    assert len(sync_plan.removes) == 3
    assert sync_plan.blocked == (
        "Sync 'crm-sync' would remove 3 of the 10 contacts that 'crm' holds (30%), "
        "more than its max_remove of 20%. Nothing was sent for it. If the segments "
        "really shrank, run again with --force, or raise max_remove in the recipe."
    )


def test_plan_removal_guard_allows_exactly_max_remove(holding_ten: Ledger) -> None:
    sync_plan = _plan(holding_ten, [_segment("qualified", _members(8))])

    assert len(sync_plan.removes) == 2
    assert sync_plan.blocked is None


def test_plan_removal_guard_follows_the_syncs_max_remove(holding_ten: Ledger) -> None:
    spec = _spec(max_remove=0.5)

    sync_plan = _plan(holding_ten, [_segment("qualified", _members(5))], spec)

    assert sync_plan.blocked is None
    assert len(sync_plan.removes) == 5


def test_plan_force_lifts_the_removal_guard(holding_ten: Ledger) -> None:
    sync_plan = _plan(holding_ten, [_segment("qualified", [])], force=True)

    assert len(sync_plan.removes) == 10
    assert sync_plan.blocked is None


def test_plan_has_no_removal_guard_without_on_exit(holding_ten: Ledger) -> None:
    spec = _spec(on_exit=None)

    sync_plan = _plan(holding_ten, [_segment("qualified", [])], spec)

    assert len(sync_plan.removes) == 10
    assert sync_plan.blocked is None


# ---------------------------------------------------------------- skip-existing


def test_plan_skip_existing_baselines_the_first_run_only(ledger: Ledger) -> None:
    spec = _spec(initial="skip-existing")
    first = _plan(ledger, [_segment("qualified", ["c00", "c01"])], spec)

    assert first.changes == []
    assert [(s, c) for s, c, _ in first.baseline] == [
        ("qualified", "c00"),
        ("qualified", "c01"),
    ]
    assert first.baseline[0][2] == {"email": "c00@acme.test", "plan": "free"}

    ledger.baseline(spec.name, spec.destination, first.baseline)
    second = _plan(ledger, [_segment("qualified", ["c00", "c01", "c02"])], spec)

    assert second.baseline == []
    assert _keys(second.adds) == [("qualified", "c02")]


def test_plan_skip_existing_does_not_baseline_a_started_sync(ledger: Ledger) -> None:
    ledger.mark_sync_started("crm-sync", "crm")

    sync_plan = _plan(
        ledger, [_segment("qualified", ["c00"])], _spec(initial="skip-existing")
    )

    assert sync_plan.baseline == []
    assert _keys(sync_plan.adds) == [("qualified", "c00")]


# ----------------------------------------------------------------- change ids


def _enter(ledger: Ledger, at: str, *contacts: str) -> None:
    ledger.record_membership([("qualified", "qualified", c) for c in contacts], [], at)


def _leave(ledger: Ledger, at: str, *contacts: str) -> None:
    ledger.record_membership([], [("qualified", c) for c in contacts], at)


def test_plan_change_ids_are_stable_for_the_same_ledger_state(ledger: Ledger) -> None:
    _enter(ledger, "2026-06-01T00:00", "c00", "c01")
    _deliver(ledger, _plan(ledger, [_segment("qualified", ["c00"])]))
    _enter(ledger, "2026-06-02T00:00", "c02")
    _leave(ledger, "2026-06-02T00:00", "c00")
    segments = [_segment("qualified", ["c01", "c02"])]
    spec = _spec(max_remove=1.0)

    first = _plan(ledger, segments, spec)
    second = _plan(ledger, segments, spec)

    assert [c.kind for c in first.changes] == ["enter", "enter", "exit"]
    assert [c.id for c in first.changes] == [c.id for c in second.changes]
    assert len({c.id for c in first.changes}) == 3


def test_plan_change_id_differs_for_a_reentry(ledger: Ledger) -> None:
    segments = [_segment("qualified", ["c00"])]
    _enter(ledger, "2026-06-01T00:00", "c00")
    first_entry = _plan(ledger, segments)
    _deliver(ledger, first_entry)
    _leave(ledger, "2026-06-02T00:00", "c00")
    exit_plan = _plan(ledger, [_segment("qualified", [])], force=True)
    _deliver(ledger, exit_plan)
    _enter(ledger, "2026-06-03T00:00", "c00")

    reentry = _plan(ledger, segments)

    assert _keys(reentry.adds) == [("qualified", "c00")]
    assert reentry.adds[0].id != first_entry.adds[0].id
    assert reentry.adds[0].id != exit_plan.removes[0].id


def test_plan_update_ids_follow_the_fields(ledger: Ledger) -> None:
    segments = [_segment("qualified", ["c00"])]
    _deliver(ledger, _plan(ledger, segments))
    pro = _table([dict(CONTACTS[0], plan="pro")])
    team = _table([dict(CONTACTS[0], plan="team")])

    assert _plan(ledger, segments, table=pro).updates[0].id == (
        _plan(ledger, segments, table=pro).updates[0].id
    )
    assert _plan(ledger, segments, table=pro).updates[0].id != (
        _plan(ledger, segments, table=team).updates[0].id
    )


def test_plan_add_ids_are_stable_before_membership_is_recorded(
    ledger: Ledger,
) -> None:
    segments = [_segment("qualified", ["c00"])]

    dry = _plan(ledger, segments)
    _enter(ledger, "2026-06-01T00:00", "c00")
    run = _plan(ledger, segments)

    assert dry.adds[0].id == run.adds[0].id


def test_plan_update_ids_differ_when_fields_change_back_and_forth(
    ledger: Ledger,
) -> None:
    _enter(ledger, "2026-06-01T00:00", "c00")
    _deliver(ledger, _plan(ledger, [_segment("qualified", ["c00"])]))
    ids = []
    for plan_name in ("pro", "enterprise", "pro"):
        contacts = [{**CONTACTS[0], "plan": plan_name}]
        plan = _plan(ledger, [_segment("qualified", ["c00"])], table=_table(contacts))
        ids.append(plan.updates[0].id)
        _deliver(ledger, plan)

    assert len(set(ids)) == 3


def test_plan_exit_id_never_repeats_an_earlier_exit(ledger: Ledger) -> None:
    segments = [_segment("qualified", ["c00"]), _segment("trial", [])]
    _enter(ledger, "2026-06-01T00:00", "c00")
    _deliver(ledger, _plan(ledger, segments))
    _leave(ledger, "2026-06-02T00:00", "c00")
    first_exit = _plan(ledger, [_segment("qualified", [])], force=True)
    _deliver(ledger, first_exit)
    _enter(ledger, "2026-06-03T00:00", "c00")
    _deliver(ledger, _plan(ledger, segments))

    # c00 is still a member, but the sync no longer carries `qualified`.
    dropped = _plan(ledger, segments, _spec("trial"), force=True)

    assert _keys(dropped.removes) == [("qualified", "c00")]
    assert dropped.removes[0].id != first_exit.removes[0].id
