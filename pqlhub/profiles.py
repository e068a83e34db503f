"""Profiles: each contact joined to its account, with traits folded from events.

The profile stage reads the recipe's sources once. Contacts and accounts are kept
column by column, and only the columns the recipe uses; events are folded into
traits in one streaming pass and never kept. Rules then read a `Profile`, a light
mapping over one row of the table.

Joining: a contact's account is the account whose key is in the contact's
`identity.account` field; when that field is empty (or not configured) and
`identity.account_from_email` is on, it is the domain of the contact's email,
unless that is a free-mail domain. An account key that no account source lists
still groups its contacts, with no account fields.

Events follow the Segment spec. `track` calls feed traits; `identify` calls update
the fields of the contact their `userId` names, and `group` calls the fields of the
account their `groupId` names, in the order the events arrive. Only events at or
before the run's time count, so a run with `--as-of` in the past is reproducible.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
    _interned: dict[Any, Any] = field(default_factory=dict)
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
        columns = table.columns
        link_field = self.identity.account
        email_field = self.identity.email
        for record in records:
            contact_key = str(record[key])
            row = table.index.get(contact_key)
            if row is None:
                row = len(table.keys)
                table.index[contact_key] = row
                table.keys.append(contact_key)
                for column in columns.values():
                    column.append(None)
                self._account_link.append(None)
            for name, column in columns.items():
                value = record.get(name)
                if value is not None:
                    column[row] = self._intern(value)
            link = record.get(link_field) if link_field else None
            if not link and self.identity.account_from_email:
                link = self._company_domain(record.get(email_field))
            if link:
                self._account_link[row] = str(link).lower()

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
        # Most profile values repeat (roles, plans, countries): keep one copy each.
        if isinstance(value, str) and len(value) <= 32:
            return self._interned.setdefault(value, value)
        return value


# -------------------------------------------------------------------------- events


@dataclass
class FoldReport:
    """What folding events found.

    Attributes:
        events: Calls read.
        folded: Track calls that counted towards at least one trait's row.
        unknown_user: Calls whose user matched no contact.
        after_as_of: Calls later than the run's time, ignored.
    """

    events: int = 0
    folded: int = 0
    unknown_user: int = 0
    after_as_of: int = 0


class _Accumulator:
    """Folds the events of one trait into one value per row."""

    def __init__(self, spec: TraitSpec, rows: int, as_of: datetime) -> None:
        self.spec = spec
        self.cutoff = as_of - spec.within if spec.within else None
        self.read = _reader(spec.of)
        self.values: list[Any] = [None] * rows
        self.sets: dict[int, set[Any]] = {}

    def fold(self, row: int, event: Mapping[str, Any], moment: datetime) -> None:
        cutoff = self.cutoff
        if cutoff is not None and moment < cutoff:
            return
        agg = self.spec.agg
        values = self.values
        if agg in ("count", "exists"):
            values[row] = (values[row] or 0) + 1
        elif agg in ("distinct", "count_distinct"):
            value = self.read(event)
            if value is not None and isinstance(value, str | int | float | bool):
                self.sets.setdefault(row, set()).add(value)
        elif agg in ("first", "last"):
            value = self.read(event) if self.spec.of else moment
            current = values[row]
            if isinstance(value, datetime) and (
                current is None
                or (value < current if agg == "first" else value > current)
            ):
                values[row] = value
        else:
            self._fold_number(row, self.read(event))

    def _fold_number(self, row: int, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        if isinstance(value, float) and not math.isfinite(value):
            return
        current = self.values[row]
        agg = self.spec.agg
        if current is None:
            self.values[row] = value
        elif agg == "sum":
            self.values[row] = current + value
        elif agg == "min":
            self.values[row] = min(current, value)
        else:
            self.values[row] = max(current, value)

    def result(self) -> list[Any]:
        agg = self.spec.agg
        values = self.values
        if agg == "count":
            return [value or 0 for value in values]
        if agg == "exists":
            return [bool(value) for value in values]
        if agg == "sum":
            return [0 if value is None else value for value in values]
        if agg in ("distinct", "count_distinct"):
            counted = agg == "count_distinct"
            out: list[Any] = [0 if counted else [] for _ in values]
            for row, found in self.sets.items():
                out[row] = len(found) if counted else sorted(found, key=str)
            return out
        return values


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


@dataclass
class _Dispatch:
    by_event: dict[str, list[_Accumulator]]
    any_event: list[_Accumulator]
    accumulators: list[_Accumulator]


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
        events: Segment-spec calls whose `timestamp` is an aware datetime.
        traits: The traits to compute; no other work is done per event.
        as_of: The run's time: later events are ignored, windows end here.
        user_field: The contact column events' `userId` refers to; None for the
            contact key.

    Returns:
        Counts of what was folded and what was not.
    """
    specs = list(traits)
    contact = [s for s in specs if s.per == "contact"]
    account = [s for s in specs if s.per == "account"]
    contacts = _dispatch(contact, len(table), as_of)
    accounts = _dispatch(account, table.no_account, as_of)
    users = _user_index(table, user_field)
    account_of = table.account_of
    no_account = table.no_account
    updates = _FieldUpdates(table)
    report = FoldReport()

    for event in events:
        report.events += 1
        moment = event.get("timestamp")
        if not isinstance(moment, datetime) or moment > as_of:
            report.after_as_of += 1
            continue
        row = users.get(event.get("userId"))
        kind = event.get("type")
        if kind != "track":
            updates.apply(kind, row, event)
            continue
        if row is None:
            report.unknown_user += 1
            continue
        report.folded += 1
        name = event.get("event")
        for accumulator in contacts.by_event.get(name, ()):  # type: ignore[arg-type]
            accumulator.fold(row, event, moment)
        for accumulator in contacts.any_event:
            accumulator.fold(row, event, moment)
        account_row = account_of[row]
        if account_row != no_account:
            for accumulator in accounts.by_event.get(name, ()):  # type: ignore[arg-type]
                accumulator.fold(account_row, event, moment)
            for accumulator in accounts.any_event:
                accumulator.fold(account_row, event, moment)

    for accumulator in contacts.accumulators:
        table.add_column(accumulator.spec.field, accumulator.result())
    for accumulator in accounts.accumulators:
        table.add_account_column(accumulator.spec.name, accumulator.result())
    return report


def _dispatch(specs: list[TraitSpec], rows: int, as_of: datetime) -> _Dispatch:
    accumulators = [_Accumulator(spec, rows, as_of) for spec in specs]
    by_event: dict[str, list[_Accumulator]] = {}
    any_event: list[_Accumulator] = []
    for accumulator in accumulators:
        if accumulator.spec.event is None:
            any_event.append(accumulator)
        else:
            by_event.setdefault(accumulator.spec.event, []).append(accumulator)
    return _Dispatch(by_event, any_event, accumulators)


def _user_index(table: ProfileTable, user_field: str | None) -> dict[Any, int]:
    if user_field is None:
        return table.index
    column = table.columns.get(user_field, [])
    return {str(value): row for row, value in enumerate(column) if value is not None}


class _FieldUpdates:
    """Applies `identify` and `group` calls to the fields the recipe keeps."""

    def __init__(self, table: ProfileTable) -> None:
        self.table = table

    def apply(self, kind: Any, row: int | None, event: Mapping[str, Any]) -> None:
        traits = event.get("traits")
        if not isinstance(traits, Mapping):
            return
        if kind == "identify" and row is not None:
            columns = self.table.columns
            for name, value in traits.items():
                column = columns.get(name)
                if column is not None and value is not None:
                    column[row] = value
        elif kind == "group":
            group = event.get("groupId")
            account_row = self.table.account_index.get(str(group).lower())
            if account_row is None:
                return
            for name, value in traits.items():
                column = self.table.account_columns.get(name)
                if column is not None and value is not None:
                    column[account_row] = value
