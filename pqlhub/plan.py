"""The plan: for each sync, the exact changes a run would make.

A sync's desired state is every member of its segments with the sync's mapped
fields. The plan diffs it against what the ledger says the destination holds:
adds (contacts that entered), removes (contacts that left) and updates (fields
changed). Guard rails apply here, before anything is sent: segments held back for
their size are frozen (neither added to nor removed from), a plan that would remove
more than the sync's `max_remove` share of what the destination holds is blocked
unless forced, and a first run with `initial = "skip-existing"` records everyone
already in the segments as present without sending them.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from pqlhub.connectors import Change
from pqlhub.errors import Problem
from pqlhub.ledger import Ledger, fields_hash
from pqlhub.profiles import Profile, ProfileTable
from pqlhub.recipe import Recipe
from pqlhub.segments import Segment

__all__ = [
    "ActionCall",
    "Plan",
    "SyncPlan",
    "SyncSpec",
    "compile_syncs",
    "fields_hash",
    "make_plan",
]

DEFAULT_MAX_REMOVE: Final = 0.2
DEFAULT_MAX_ATTEMPTS: Final = 3
SAMPLE_SIZE: Final = 5
_GLOB_CHARACTERS: Final = frozenset("*?[")


@dataclass(frozen=True)
class ActionCall:
    """An action a sync calls, with its options from the recipe."""

    action: str
    options: Mapping[str, Any]


@dataclass(frozen=True)
class SyncSpec:
    """One `[[syncs]]` entry, validated.

    Attributes:
        name: The sync's name.
        destination: The destination block's name.
        selectors: Segment ids, names, or globs over names.
        on_enter: What to do when a contact enters (and when its fields change).
        on_exit: What to do when it leaves; None to only forget it.
        fields: Destination field name to profile field.
        max_remove: The largest share of what the destination holds one run
            may remove.
        initial: `send-all`, or `skip-existing` to baseline the first run.
        max_attempts: Runs a failed change is tried in before it is dead.
    """

    name: str
    destination: str
    selectors: tuple[str, ...]
    on_enter: ActionCall
    on_exit: ActionCall | None
    fields: Mapping[str, str]
    max_remove: float = DEFAULT_MAX_REMOVE
    initial: str = "send-all"
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    def selects(self, segment: Segment) -> bool:
        """Return whether the sync carries this expanded segment."""
        return any(_matches(selector, segment) for selector in self.selectors)


def compile_syncs(recipe: Recipe, problems: list[Problem]) -> list[SyncSpec]:
    """Validate the recipe's syncs against their destinations' declared actions."""
    specs = []
    seen: set[str] = set()
    for index, table in enumerate(recipe.data.get("syncs", [])):
        if not table.get("enabled", True):
            continue
        path = f"syncs[{index}]"
        if table["name"] in seen:
            problems.append(
                Problem(f"{path}.name", f"Another sync is named {table['name']!r}.")
            )
        seen.add(table["name"])
        spec = _sync_spec(recipe, table, path, problems)
        if spec is not None:
            specs.append(spec)
    return specs


def _sync_spec(
    recipe: Recipe, table: Mapping[str, Any], path: str, problems: list[Problem]
) -> SyncSpec | None:
    block = recipe.destinations.get(table["destination"])
    if block is None:
        known = ", ".join(repr(name) for name in recipe.destinations) or "none"
        problems.append(
            Problem(
                f"{path}.destination",
                f"No enabled destination is named {table['destination']!r}; "
                f"destinations: {known}.",
            )
        )
        return None
    found = len(problems)
    on_enter = _action(block.connector, table["on_enter"], "enter", f"{path}.on_enter")
    on_exit = None
    if "on_exit" in table:
        on_exit = _action(block.connector, table["on_exit"], "exit", f"{path}.on_exit")
    for problem in (on_enter, on_exit):
        if isinstance(problem, Problem):
            problems.append(problem)
    if len(problems) > found or isinstance(on_enter, Problem):
        return None
    return SyncSpec(
        name=table["name"],
        destination=table["destination"],
        selectors=tuple(table["segments"]),
        on_enter=on_enter,
        on_exit=on_exit if isinstance(on_exit, ActionCall) else None,
        fields=dict(table.get("fields", {})),
        max_remove=table.get("max_remove", DEFAULT_MAX_REMOVE),
        initial=table.get("initial", "send-all"),
        max_attempts=table.get("max_attempts", DEFAULT_MAX_ATTEMPTS),
    )


def _action(
    connector: Any, table: Mapping[str, Any], moment: str, path: str
) -> ActionCall | Problem:
    from pqlhub.schemas import validate

    name = table["action"]
    declared = connector.actions.get(name)
    if declared is None:
        known = ", ".join(sorted(connector.actions)) or "none"
        return Problem(
            f"{path}.action",
            f"The {connector.name!r} destination has no action {name!r}; "
            f"its actions: {known}.",
        )
    if moment not in declared.on:
        return Problem(
            f"{path}.action",
            f"The action {name!r} cannot be used on {moment}; it is for "
            f"{' and '.join(sorted(declared.on))}.",
        )
    options = {key: value for key, value in table.items() if key != "action"}
    faults = validate(options, declared.args_schema, path.replace("]", "").split("["))
    if faults:
        return faults[0]
    return ActionCall(name, options)


# ------------------------------------------------------------------------ the plan


@dataclass
class SyncPlan:
    """The changes one sync would make.

    Attributes:
        sync: The sync's name.
        destination: The destination block's name.
        adds: Contacts that entered a segment.
        removes: Contacts that left (sent with `on_exit`, or only forgotten).
        updates: Members whose mapped fields changed.
        holding: How many (contact, segment) pairs the destination holds now.
        held_back: Segments left alone because they are below their minimum size.
        baseline: Pairs to record as present without sending, on a first
            `skip-existing` run.
        dead_letters: Changes left out because they failed too often.
        blocked: Why the sync will not be sent, when a guard rail stops it.
        unmatched: Selectors that matched no segment.
    """

    sync: str
    destination: str
    adds: list[Change] = field(default_factory=list)
    removes: list[Change] = field(default_factory=list)
    updates: list[Change] = field(default_factory=list)
    holding: int = 0
    held_back: list[str] = field(default_factory=list)
    baseline: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    dead_letters: int = 0
    blocked: str | None = None
    unmatched: list[str] = field(default_factory=list)

    @property
    def changes(self) -> list[Change]:
        """Every change, adds first."""
        return [*self.adds, *self.updates, *self.removes]

    def as_dict(self, full: bool = False) -> dict[str, Any]:
        """Return the plan as JSON-ready values, with every change when `full`."""
        entry: dict[str, Any] = {
            "sync": self.sync,
            "destination": self.destination,
            "add": len(self.adds),
            "remove": len(self.removes),
            "update": len(self.updates),
            "holding": self.holding,
            "baseline": len(self.baseline),
            "held_back": self.held_back,
            "dead_letters": self.dead_letters,
            "blocked": self.blocked,
            "unmatched_selectors": self.unmatched,
            "sample": {
                "add": [c.key for c in self.adds[:SAMPLE_SIZE]],
                "remove": [c.key for c in self.removes[:SAMPLE_SIZE]],
                "update": [c.key for c in self.updates[:SAMPLE_SIZE]],
            },
        }
        if full:
            entry["changes"] = [_change_dict(change) for change in self.changes]
        return entry


@dataclass
class Plan:
    """Every sync's plan for one run.

    Attributes:
        as_of: The evaluation time.
        syncs: One plan per enabled sync.
        specs: The syncs' specs, by name.
    """

    as_of: datetime
    syncs: list[SyncPlan]
    specs: dict[str, SyncSpec]

    def as_dict(self, full: bool = False) -> dict[str, Any]:
        """Return the plan as JSON-ready values."""
        return {
            "as_of": self.as_of.isoformat(),
            "syncs": [sync.as_dict(full) for sync in self.syncs],
        }


def change_id(*parts: str) -> str:
    """Return a stable id for a change from what identifies it."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def make_plan(
    specs: Sequence[SyncSpec],
    segments: Sequence[Segment],
    table: ProfileTable,
    ledger: Ledger,
    as_of: datetime,
    force: bool = False,
) -> Plan:
    """Diff each sync's desired state against the ledger.

    Args:
        specs: The recipe's syncs.
        segments: The evaluation's expanded segments.
        table: The profiles, to read the mapped fields from.
        ledger: What the destinations hold.
        as_of: The evaluation time.
        force: Let a plan remove more than its sync's `max_remove` share.
    """
    history = _History(ledger.open_stints(), ledger.stint_counts())
    plans = [
        _sync_plan(spec, segments, table, ledger, history, force) for spec in specs
    ]
    return Plan(as_of, plans, {spec.name: spec for spec in specs})


def _sync_plan(
    spec: SyncSpec,
    segments: Sequence[Segment],
    table: ProfileTable,
    ledger: Ledger,
    history: _History,
    force: bool,
) -> SyncPlan:
    plan = SyncPlan(spec.name, spec.destination)
    chosen = [segment for segment in segments if spec.selects(segment)]
    plan.unmatched = [
        s for s in spec.selectors if not any(_matches(s, seg) for seg in segments)
    ]
    frozen = {segment.name for segment in chosen if segment.held_back}
    plan.held_back = sorted(frozen)
    desired = _desired(spec, [s for s in chosen if not s.held_back], table)
    confirmed = ledger.confirmed(spec.name)
    plan.holding = len(confirmed)
    dead = ledger.dead_letters(spec.name)
    plan.dead_letters = len(dead & (set(desired) | set(confirmed)))

    if spec.initial == "skip-existing" and not ledger.sync_started(spec.name):
        plan.baseline = [(s, c, f) for (s, c), f in sorted(desired.items())]
        return plan

    exits = ledger.exit_counts(spec.name)
    for pair in sorted(desired.keys() - confirmed.keys() - dead):
        segment, contact = pair
        stint = history.entering(pair)
        identity = _identity(spec, pair, "enter", stint, exits.get(pair, 0))
        plan.adds.append(Change(identity, contact, segment, "enter", desired[pair]))
    for pair in sorted(desired.keys() & confirmed.keys() - dead):
        held = confirmed[pair]
        digest = fields_hash(desired[pair])
        if digest != held.fields_hash:
            segment, contact = pair
            identity = change_id(
                spec.name, segment, contact, "update", str(held.version), digest
            )
            plan.updates.append(
                Change(identity, contact, segment, "update", desired[pair])
            )
    leaving = sorted(
        pair
        for pair in confirmed.keys() - desired.keys() - dead
        if pair[0] not in frozen
    )
    sent = ledger.sent_fields(spec.name, leaving)
    for segment, contact in leaving:
        pair = (segment, contact)
        stint = history.counts.get(pair, 0)
        identity = _identity(spec, pair, "exit", stint, exits.get(pair, 0))
        # An exit carries the fields last sent, so a destination can find the
        # contact by them (an email, a remote id) as it did on enter.
        fields = sent.get(pair, {})
        plan.removes.append(Change(identity, contact, segment, "exit", fields))

    plan.blocked = None if force else _removal_guard(spec, plan)
    return plan


@dataclass(frozen=True)
class _History:
    """Segment membership so far, from which changes get their stable ids."""

    open: Mapping[tuple[str, str], str]
    counts: Mapping[tuple[str, str], int]

    def entering(self, pair: tuple[str, str]) -> int:
        """Return the number of the stint a new member is starting (1 for a first)."""
        count = self.counts.get(pair, 0)
        # A run records the new stint before it plans; a dry run does not.
        return count if pair in self.open else count + 1


def _identity(
    spec: SyncSpec, pair: tuple[str, str], kind: str, stint: int, exits: int
) -> str:
    """Return a change's id: the same for a resend, new for each real change.

    An enter or exit is identified by the membership stint it belongs to and by
    how many exits of the pair the sync has delivered, so a plan made before the
    run and the run itself agree, a batch resent after a crash keeps its ids, and
    a contact who leaves and comes back gets new ones.
    """
    segment, contact = pair
    return change_id(spec.name, segment, contact, kind, str(stint), str(exits))


def _matches(selector: str, segment: Segment) -> bool:
    """Return whether a selector (an id, a name or a glob) picks the segment."""
    if selector in (segment.id, segment.name):
        return True
    return bool(_GLOB_CHARACTERS & set(selector)) and fnmatch.fnmatchcase(
        segment.name, selector
    )


def _desired(
    spec: SyncSpec, segments: Iterable[Segment], table: ProfileTable
) -> dict[tuple[str, str], dict[str, Any]]:
    getters = {name: table.getter(source) for name, source in spec.fields.items()}
    profile = Profile(table)
    cache: dict[str, dict[str, Any]] = {}
    desired: dict[tuple[str, str], dict[str, Any]] = {}
    for segment in segments:
        for key in segment.members:
            values = cache.get(key)
            if values is None:
                profile.row = table.index[key]
                values = {name: _plain(read(profile)) for name, read in getters.items()}
                cache[key] = values
            desired[(segment.name, key)] = values
    return desired


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | set | frozenset):
        return sorted(value, key=str)
    return value


def _removal_guard(spec: SyncSpec, plan: SyncPlan) -> str | None:
    if spec.on_exit is None or not plan.removes or not plan.holding:
        return None
    share = len(plan.removes) / plan.holding
    if share <= spec.max_remove:
        return None
    return (
        f"Sync {spec.name!r} would remove {len(plan.removes):,} of the "
        f"{plan.holding:,} contacts that {spec.destination!r} holds ({share:.0%}), "
        f"more than its max_remove of {spec.max_remove:.0%}. Nothing was sent for "
        "it. If the segments really shrank, run again with --force, or raise "
        "max_remove in the recipe."
    )


def _change_dict(change: Change) -> dict[str, Any]:
    return {
        "id": change.id,
        "kind": change.kind,
        "contact": change.key,
        "segment": change.segment,
        "fields": dict(change.fields),
    }
