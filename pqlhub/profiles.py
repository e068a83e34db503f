"""Profiles: each contact joined to its account, with traits folded from events.

The profile stage reads the recipe's sources once. Contacts and accounts are kept
column by column, and only the columns the recipe uses; events are folded into
traits in one streaming pass and never kept. Rules then read a `Profile`, a light
mapping over one row of the table.

Joining: a contact's account is the account whose key is in the contact's
`identity.account` field; when that field is empty (or not configured) and
`identity.account_from_email` is on, it is the domain of the contact's email.
A free-mail domain (gmail.com, ...) is never an account, from either. An account
key that no account source lists still groups its contacts, with no account fields.

Events follow the Segment spec. `track` calls feed traits; `identify` calls update
the fields of the contact their `userId` names, and `group` calls the fields of the
account their `groupId` names, in the order the events arrive. Only events at or
before the run's time count, so a run with `--as-of` in the past is reproducible.
"""

from __future__ import annotations

import logging
import math
import operator
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from pqlhub.errors import Problem, RecipeInvalidError

__all__ = [
    "FREE_MAIL_DOMAINS",
    "Profile",
    "ProfileTable",
    "TraitSpec",
    "fold_events",
    "parse_duration",
    "parse_traits",
]

logger = logging.getLogger(__name__)

ACCOUNT_PREFIX: Final = "account."

FREE_MAIL_DOMAINS: Final = frozenset(
    {
        "aol.com",
        "fastmail.com",
        "gmail.com",
        "gmx.com",
        "gmx.de",
        "googlemail.com",
        "hey.com",
        "hotmail.co.uk",
        "hotmail.com",
        "icloud.com",
        "live.com",
        "mac.com",
        "mail.com",
        "mail.ru",
        "me.com",
        "msn.com",
        "outlook.com",
        "pm.me",
        "proton.me",
        "protonmail.com",
        "qq.com",
        "tutanota.com",
        "web.de",
        "yahoo.co.uk",
        "yahoo.com",
        "yandex.com",
        "yandex.ru",
        "zoho.com",
    }
)
"""Email domains that name a mailbox provider, never a customer's company."""

Aggregation = Literal[
    "count",
    "exists",
    "first",
    "last",
    "sum",
    "min",
    "max",
    "distinct",
    "count_distinct",
]

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

TRAIT_TYPES: Final[Mapping[str, str]] = {
    "count": "number",
    "count_distinct": "number",
    "sum": "number",
    "exists": "boolean",
    "first": "datetime",
    "last": "datetime",
    "distinct": "list",
}


def parse_duration(text: str) -> timedelta:
    """Return the length of a duration such as `30d`, `12h` or `2w`."""
    return timedelta(seconds=int(text[:-1]) * _UNITS[text[-1]])


# --------------------------------------------------------------------------- traits


@dataclass(frozen=True)
class TraitSpec:
    """One trait: how events fold into a value per contact or per account.

    Attributes:
        name: The trait's name; rules read it as `name` or `account.name`.
        agg: How events are folded.
        per: Whether the value belongs to the contact or to its account.
        event: Only events with this name count, when set.
        of: What is aggregated: `properties.<name>`, `userId`, `timestamp`, ...
        within: Only events this recent count, when set.
    """

    name: str
    agg: Aggregation
    per: Literal["contact", "account"] = "contact"
    event: str | None = None
    of: str | None = None
    within: timedelta | None = None

    @property
    def field(self) -> str:
        """The profile field under which rules read the trait."""
        return f"{ACCOUNT_PREFIX}{self.name}" if self.per == "account" else self.name

    @property
    def value_type(self) -> str | None:
        """The expression type of the trait's value, when it is known."""
        return TRAIT_TYPES.get(self.agg)


_NEEDS_OF: Final = frozenset({"sum", "min", "max", "distinct", "count_distinct"})


def parse_traits(
    definitions: Mapping[str, Mapping[str, Any]],
    origin: str,
    problems: list[Problem] | None = None,
) -> dict[str, TraitSpec]:
    """Build trait specs from the recipe's `[traits]` table (already schema-valid).

    Args:
        definitions: The `[traits]` table.
        origin: How messages name the recipe.
        problems: Where to add the faults found, to report them with the
            recipe's other problems; the faulty traits are left out. When None,
            the faults are raised.

    Raises:
        RecipeInvalidError: When a trait aggregates nothing it can aggregate and
            `problems` is None.
    """
    faults: list[Problem] = []
    traits: dict[str, TraitSpec] = {}
    for name, definition in definitions.items():
        spec = trait_from_definition(name, definition)
        if spec.agg in _NEEDS_OF and spec.of is None:
            faults.append(
                Problem(
                    f"traits.{name}.of",
                    f"A {spec.agg!r} trait needs 'of', the value it aggregates "
                    "(for example 'properties.plan' or 'userId').",
                )
            )
            continue
        traits[name] = spec
    if problems is not None:
        problems.extend(faults)
    elif faults:
        raise RecipeInvalidError(origin, faults)
    return traits


def trait_from_definition(name: str, definition: Mapping[str, Any]) -> TraitSpec:
    """Build one trait spec from its recipe table."""
    within = definition.get("within")
    return TraitSpec(
        name=name,
        agg=definition["agg"],
        per=definition.get("per", "contact"),
        event=definition.get("event"),
        of=definition.get("of"),
        within=parse_duration(within) if within else None,
    )


# ---------------------------------------------------------------------- the table


class ProfileTable:
    """Contacts and accounts, column by column, with traits and dimensions.

    Row `i` is one contact. Account columns have one row per account plus a last,
    empty row that contacts without an account point at.
    """

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.index: dict[str, int] = {}
        self.columns: dict[str, list[Any]] = {}
        self.account_keys: list[str] = []
        self.account_index: dict[str, int] = {}
        self.account_columns: dict[str, list[Any]] = {}
        self.account_of: list[int] = []

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def no_account(self) -> int:
        """The account row of contacts that have no account."""
        return len(self.account_keys)

    def getter(self, name: str) -> Callable[[Profile], Any]:
        """Return a fast function reading the field `name` of a profile."""
        if name.startswith(ACCOUNT_PREFIX):
            column = self.account_columns.get(name[len(ACCOUNT_PREFIX) :])
            if column is None:
                return _missing
            account_of = self.account_of
            return lambda profile: column[account_of[profile.row]]
        own = self.columns.get(name)
        if own is None:
            return _missing
        return lambda profile: own[profile.row]

    def values_of(self, name: str) -> list[Any]:
        """Return the field `name` of every contact, in row order."""
        if name.startswith(ACCOUNT_PREFIX):
            column = self.account_columns.get(name[len(ACCOUNT_PREFIX) :])
            if column is None:
                return [None] * len(self)
            return [column[row] for row in self.account_of]
        own = self.columns.get(name)
        return list(own) if own is not None else [None] * len(self)

    def has(self, name: str) -> bool:
        """Return whether the table holds a column for the field `name`."""
        if name.startswith(ACCOUNT_PREFIX):
            return name[len(ACCOUNT_PREFIX) :] in self.account_columns
        return name in self.columns

    def profile(self, key: str) -> Profile | None:
        """Return the profile of the contact with `key`, or None."""
        row = self.index.get(key)
        return Profile(self, row) if row is not None else None

    def add_column(self, name: str, values: list[Any]) -> None:
        """Add a computed contact column (a trait or a dimension)."""
        self.columns[name] = values

    def add_account_column(self, name: str, values: list[Any]) -> None:
        """Add a computed account column; the empty last row is appended here."""
        self.account_columns[name] = [*values, None]


def _missing(profile: Profile) -> Any:
    return None


class Profile(Mapping[str, Any]):
    """One contact as rules see it: its fields, `account.` fields, traits, dimensions.

    The engine moves a single profile along the table by setting `row`, so reading
    a value costs one list index.
    """

    __slots__ = ("row", "table")

    def __init__(self, table: ProfileTable, row: int = 0) -> None:
        self.table = table
        self.row = row

    @property
    def key(self) -> str:
        """The contact's key."""
        return self.table.keys[self.row]

    def __getitem__(self, name: str) -> Any:
        if not self.table.has(name):
            raise KeyError(name)
        return self.table.getter(name)(self)

    def __iter__(self) -> Iterator[str]:
        yield from self.table.columns
        for name in self.table.account_columns:
            yield f"{ACCOUNT_PREFIX}{name}"

    def __len__(self) -> int:
        return len(self.table.columns) + len(self.table.account_columns)


# ------------------------------------------------------------------------ building


@dataclass(frozen=True)
class Identity:
    """How contacts, accounts and events refer to each other (`[identity]`).

    Attributes:
        account: The contact field naming its account's key.
        account_from_email: Whether to fall back to the email's domain.
        email: The contact field holding the email.
        free_mail: Domains never taken as accounts.
        user: The contact field that events' `userId` refers to (None: the key).
    """

    account: str | None = None
    account_from_email: bool = True
    email: str = "email"
    free_mail: frozenset[str] = FREE_MAIL_DOMAINS
    user: str | None = None

    @classmethod
    def from_recipe(cls, table: Mapping[str, Any]) -> Identity:
        """Build the identity settings from the recipe's `[identity]` table."""
        extra = {domain.lower() for domain in table.get("free_mail_domains", [])}
        return cls(
            account=table.get("account"),
            account_from_email=table.get("account_from_email", True),
            email=table.get("email", "email"),
            free_mail=FREE_MAIL_DOMAINS | extra,
            user=table.get("user"),
        )


@dataclass
class TableBuilder:
    """Fills a `ProfileTable` from contact and account records.

    Attributes:
        identity: How records refer to each other.
        contact_fields: The contact fields to keep.
        account_fields: The account fields to keep.
    """

    identity: Identity
    contact_fields: frozenset[str]
    account_fields: frozenset[str]
    table: ProfileTable = field(default_factory=ProfileTable)
    _interned: dict[str, dict[Any, Any]] = field(default_factory=dict)
    _account_link: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in sorted(self.contact_fields):
            self.table.columns[name] = []
        for name in sorted(self.account_fields):
            self.table.account_columns[name] = []

    def add_accounts(self, records: Iterable[Mapping[str, Any]], key: str) -> None:
        """Add (or update, by key) accounts."""
        columns = self.table.account_columns
        for record in records:
            row = self._account_row(str(record[key]).lower())
            for name, column in columns.items():
                value = record.get(name)
                if value is not None:
                    column[row] = self._intern(value)

    def add_contacts(self, records: Iterable[Mapping[str, Any]], key: str) -> None:
        """Add (or update, by key) contacts."""
        table = self.table
        index, keys, links = table.index, table.keys, self._account_link
        columns = [
            (name, column, self._cache(name)) for name, column in table.columns.items()
        ]
        link_field = self.identity.account
        from_email = self.identity.account_from_email
        email_field = self.identity.email
        free_mail = self.identity.free_mail
        domains = self._cache("\0links")
        for record in records:
            contact_key = str(record[key])
            row = index.get(contact_key)
            if row is None:
                row = len(keys)
                index[contact_key] = row
                keys.append(contact_key)
                for name, column, cache in columns:
                    value = record.get(name)
                    # Inlined `_interned`: this runs once per field per contact.
                    if value.__class__ is str and len(cache) < _INTERN_LIMIT:
                        value = cache.setdefault(value, value)
                    column.append(value)
                links.append(None)
            else:
                for name, column, cache in columns:
                    value = record.get(name)
                    if value is not None:
                        column[row] = _interned(value, cache)
            link = record.get(link_field) if link_field else None
            if link and str(link).lower() in free_mail:
                link = None  # a mailbox provider is never a customer's company
            if not link and from_email:
                link = self._company_domain(record.get(email_field))
            if link:
                links[row] = _interned(str(link).lower(), domains)

    def _cache(self, column: str) -> dict[Any, Any]:
        return self._interned.setdefault(column, {})

    def finish(self) -> ProfileTable:
        """Link contacts to accounts and return the table."""
        table = self.table
        table.account_of = [
            self._account_row(link) if link else -1 for link in self._account_link
        ]
        empty = table.no_account
        table.account_of = [empty if row < 0 else row for row in table.account_of]
        for column in table.account_columns.values():
            column.append(None)
        return table

    def _account_row(self, account_key: str) -> int:
        table = self.table
        row = table.account_index.get(account_key)
        if row is None:
            row = len(table.account_keys)
            table.account_index[account_key] = row
            table.account_keys.append(account_key)
            for column in table.account_columns.values():
                column.append(None)
        return row

    def _company_domain(self, email: Any) -> str | None:
        if not isinstance(email, str) or "@" not in email:
            return None
        domain = email.rsplit("@", 1)[1].strip().lower()
        if not domain or domain in self.identity.free_mail:
            return None
        return domain

    def _intern(self, value: Any) -> Any:
        return _interned(value, self._cache("\0accounts"))


_INTERN_LIMIT: Final = 50_000


def _interned(value: Any, cache: dict[Any, Any]) -> Any:
    """Return one shared copy of a repeating string value.

    Most profile values repeat (roles, plans, countries, company domains), so a
    column keeps one copy of each. A column whose values turn out to be mostly
    unique (emails, names) stops being interned once its cache is full.
    """
    if value.__class__ is not str or len(cache) >= _INTERN_LIMIT:
        return value
    return cache.setdefault(value, value)


# -------------------------------------------------------------------------- events


@dataclass
class FoldReport:
    """What folding events found.

    Attributes:
        events: Calls read.
        folded: Track calls of known contacts, offered to every trait.
        unknown_user: Track calls whose user matched no contact.
        after_as_of: Calls later than the run's time (or with no time), ignored.
    """

    events: int = 0
    folded: int = 0
    unknown_user: int = 0
    after_as_of: int = 0


Fold = Callable[[int, Mapping[str, Any], datetime], None]
"""Folds one event of a known contact row at a moment into a partial."""


@dataclass
class _Partial:
    """Per-row values that one or more traits are computed from.

    Traits that filter events the same way share a partial: `api_calls` (count
    per account within 30 days) and a rule's "at least 3 calls within 30 days"
    read the same per-contact counts. Account traits are folded per contact and
    combined per account at the end, which keeps the account lookup off the
    per-event path for all but value-collecting traits.
    """

    event: str | None
    fold: Fold | None
    values: Any
    cutoff: datetime = field(default=datetime.min.replace(tzinfo=UTC))
    slot: int | None = None


def _make_count(slot: int, cutoff: datetime | None) -> _Partial:
    # Counts are the most common partial. They live side by side, one slot per
    # count, in a single array with a row of slots per contact, so an event that
    # feeds several counts touches one place in memory; and the fold loop
    # increments them inline rather than through a function call.
    if cutoff is None:
        return _Partial(None, None, None, slot=slot)
    return _Partial(None, None, None, cutoff, slot)


def _make_extreme(
    rows: int, cutoff: datetime | None, latest: bool, read: Callable[..., Any] | None
) -> _Partial:
    values: list[Any] = [None] * rows

    def fold(row: int, event: Mapping[str, Any], moment: datetime) -> None:
        if cutoff is not None and moment < cutoff:
            return
        value = moment if read is None else _as_datetime(read(event))
        if value is None:
            return
        current = values[row]
        if current is None or (value > current if latest else value < current):
            values[row] = value

    return _Partial(None, fold, values)


def _make_number(
    rows: int, cutoff: datetime | None, agg: str, read: Callable[..., Any]
) -> _Partial:
    values: list[Any] = [None] * rows
    picks: dict[str, Callable[[Any, Any], Any]] = {
        "sum": operator.add,
        "min": min,
        "max": max,
    }
    pick = picks[agg]

    def fold(row: int, event: Mapping[str, Any], moment: datetime) -> None:
        if cutoff is not None and moment < cutoff:
            return
        value = read(event)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        if isinstance(value, float) and not math.isfinite(value):
            return
        current = values[row]
        values[row] = value if current is None else pick(current, value)

    return _Partial(None, fold, values)


def _make_set(
    cutoff: datetime | None,
    read: Callable[..., Any],
    account_of: Sequence[int] | None,
    no_account: int,
) -> _Partial:
    sets: dict[int, set[Any]] = {}

    def fold(row: int, event: Mapping[str, Any], moment: datetime) -> None:
        if cutoff is not None and moment < cutoff:
            return
        if account_of is not None:
            row = account_of[row]
            if row == no_account:
                return
        value = read(event)
        if isinstance(value, str | int | float | bool):
            sets.setdefault(row, set()).add(value)

    return _Partial(None, fold, sets)


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


_Route = tuple[tuple[tuple[int, datetime], ...], tuple[Fold, ...]]


def _route(partials: Sequence[_Partial]) -> _Route:
    counters = tuple((p.slot or 0, p.cutoff) for p in partials if p.fold is None)
    folds = tuple(p.fold for p in partials if p.fold is not None)
    return counters, folds


class _Plan:
    """Turns trait specs into shared partials, and partials back into columns."""

    def __init__(
        self, table: ProfileTable, as_of: datetime, user_field: str | None
    ) -> None:
        self.table = table
        self.as_of = as_of
        self.user_field = user_field
        self.partials: dict[tuple[Any, ...], _Partial] = {}
        self.columns: list[tuple[TraitSpec, Callable[[], list[Any]]]] = []
        self.width = 0
        self.counts: array[int] = array("q")

    def add(self, spec: TraitSpec) -> None:
        """Plan one trait: the partial it needs and how its column is made."""
        cutoff = self.as_of - spec.within if spec.within else None
        of = None if spec.of in (None, "timestamp") else spec.of
        agg = spec.agg
        if agg in ("count", "exists") or (
            spec.per == "account"
            and agg in ("count_distinct", "distinct")
            and of == "userId"
        ):
            partial = self._partial(
                ("count", spec.event, cutoff),
                lambda: _make_count(self._slot(), cutoff),
                spec.event,
            )
        elif agg in ("first", "last"):
            read = _reader(of) if of else None
            partial = self._partial(
                (agg, spec.event, cutoff, of),
                lambda: _make_extreme(len(self.table), cutoff, agg == "last", read),
                spec.event,
            )
        elif agg in ("sum", "min", "max"):
            partial = self._partial(
                (agg, spec.event, cutoff, of),
                lambda: _make_number(len(self.table), cutoff, agg, _reader(of)),
                spec.event,
            )
        else:
            per_account = spec.per == "account"
            account_of = self.table.account_of if per_account else None
            partial = self._partial(
                ("set", spec.event, cutoff, of, per_account),
                lambda: _make_set(
                    cutoff, _reader(of), account_of, self.table.no_account
                ),
                spec.event,
            )
        self.columns.append((spec, lambda: self._column(spec, partial)))

    def _partial(
        self, key: tuple[Any, ...], make: Callable[[], _Partial], event: str | None
    ) -> _Partial:
        if key not in self.partials:
            partial = make()
            partial.event = event
            self.partials[key] = partial
        return self.partials[key]

    def _slot(self) -> int:
        self.width += 1
        return self.width - 1

    def routes(self) -> tuple[dict[str, _Route], _Route]:
        """Return, per event name, the counters and folds an event feeds.

        The second value is the route of events no trait names: the counters and
        folds that take every event. The counts array is allocated here, once
        every trait is planned.
        """
        self.counts = array("q", bytes(8 * self.width * len(self.table)))
        every = _route([p for p in self.partials.values() if p.event is None])
        names = {p.event for p in self.partials.values() if p.event is not None}
        routes = {}
        for name in names:
            own = [p for p in self.partials.values() if p.event == name]
            mine = _route(own)
            routes[name] = (mine[0] + every[0], mine[1] + every[1])
        return routes, every

    def _column(self, spec: TraitSpec, partial: _Partial) -> list[Any]:
        values = partial.values
        if partial.slot is not None:
            values = self.counts[partial.slot :: self.width]
        agg = spec.agg
        if spec.per == "account" and not isinstance(values, dict):
            users = self.table.columns.get(self.user_field or "") or self.table.keys
            return _per_account(self.table, spec, values, users)
        if agg == "count":
            return list(values)
        if agg == "exists":
            return [count > 0 for count in values]
        if agg == "sum":
            return [0 if value is None else value for value in values]
        if agg in ("distinct", "count_distinct"):
            rows = self.table.no_account if spec.per == "account" else len(self.table)
            return _from_sets(values, rows, agg == "count_distinct")
        return list(values)


def _from_sets(sets: Mapping[int, set[Any]], rows: int, counted: bool) -> list[Any]:
    out: list[Any] = [0] * rows if counted else [[] for _ in range(rows)]
    for row, found in sets.items():
        out[row] = len(found) if counted else sorted(found, key=str)
    return out


def _per_account(
    table: ProfileTable, spec: TraitSpec, values: Any, users: Sequence[Any]
) -> list[Any]:
    """Combine per-contact partials into one value per account."""
    accounts = table.no_account
    account_of = table.account_of
    agg = spec.agg
    if agg in ("count", "exists", "sum", "count_distinct"):
        totals: list[Any] = [0] * (accounts + 1)
        for row, value in enumerate(values):
            if value:
                totals[account_of[row]] += 1 if agg == "count_distinct" else value
        totals.pop()
        if agg == "exists":
            return [total > 0 for total in totals]
        return totals
    if agg == "distinct":
        found: list[list[str]] = [[] for _ in range(accounts + 1)]
        for row, value in enumerate(values):
            if value:
                found[account_of[row]].append(str(users[row]))
        found.pop()
        return [sorted(names) for names in found]
    best: list[Any] = [None] * (accounts + 1)
    latest = agg in ("last", "max")
    for row, value in enumerate(values):
        if value is None:
            continue
        account = account_of[row]
        current = best[account]
        if current is None or (value > current if latest else value < current):
            best[account] = value
    best.pop()
    return best


def _reader(path: str | None) -> Callable[[Mapping[str, Any]], Any]:
    if path is None:
        return lambda event: None
    parts = path.split(".")
    if len(parts) == 1:
        return lambda event: event.get(path)
    head, rest = parts[0], parts[1:]

    def read(event: Mapping[str, Any]) -> Any:
        value: Any = event.get(head)
        for part in rest:
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
        return value

    return read


def fold_events(
    table: ProfileTable,
    events: Iterable[Mapping[str, Any]],
    traits: Iterable[TraitSpec],
    as_of: datetime,
    user_field: str | None = None,
) -> FoldReport:
    """Fold events into trait columns of the table, in one pass.

    Args:
        table: The contacts and accounts; trait columns are added to it.
        events: Segment-spec calls whose `timestamp` is an aware datetime (a
            naive one is taken as UTC).
        traits: The traits to compute; no other work is done per event.
        as_of: The run's time: later events are ignored, windows end here.
        user_field: The contact column events' `userId` refers to; None for the
            contact key.

    Returns:
        Counts of what was folded and what was not.
    """
    planned = _Plan(table, as_of, user_field)
    for spec in traits:
        planned.add(spec)
    routes, default = planned.routes()
    counts, width = planned.counts, planned.width
    users = _user_index(table, user_field)
    updates = _FieldUpdates(table)
    seen = folded = unknown = late = 0

    for event in events:
        seen += 1
        moment = event.get("timestamp")
        try:
            if moment > as_of:  # type: ignore[operator]
                late += 1
                continue
        except TypeError:
            moment = _as_datetime(moment)
            if moment is None or moment > as_of:
                late += 1
                continue
        row = users.get(event.get("userId"))
        kind = event.get("type")
        if kind != "track":
            updates.apply(kind, row, event)
            continue
        if row is None:
            unknown += 1
            continue
        counters, folds = routes.get(event.get("event"), default)  # type: ignore[arg-type]
        base = row * width
        for slot, cutoff in counters:
            if moment >= cutoff:  # type: ignore[operator]
                counts[base + slot] += 1
        for fold in folds:
            fold(row, event, moment)  # type: ignore[arg-type]
        folded += 1

    for spec, column in planned.columns:
        if spec.per == "account":
            table.add_account_column(spec.name, column())
        else:
            table.add_column(spec.field, column())
    return FoldReport(seen, folded, unknown, late)


def _user_index(table: ProfileTable, user_field: str | None) -> dict[Any, int]:
    if user_field is None:
        return table.index
    column = table.columns.get(user_field, [])
    return {str(value): row for row, value in enumerate(column) if value is not None}


class _FieldUpdates:
    """Applies `identify` and `group` calls to the fields the recipe keeps."""

    def __init__(self, table: ProfileTable) -> None:
        self.table = table
        self.contact_names = frozenset(table.columns)
        self.account_names = frozenset(table.account_columns)

    def apply(self, kind: Any, row: int | None, event: Mapping[str, Any]) -> None:
        traits = event.get("traits")
        if not isinstance(traits, Mapping):
            return
        if kind == "identify" and row is not None:
            columns = self.table.columns
            for name in self.contact_names.intersection(traits):
                value = traits[name]
                if value is not None:
                    columns[name][row] = value
        elif kind == "group" and self.account_names:
            names = self.account_names.intersection(traits)
            if not names:
                return
            group = event.get("groupId")
            account_row = self.table.account_index.get(str(group).lower())
            if account_row is None:
                return
            for name in names:
                value = traits[name]
                if value is not None:
                    self.table.account_columns[name][account_row] = value
