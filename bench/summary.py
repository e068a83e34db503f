"""Show what candidate PQL thresholds would select in a generated data set.

It folds the events of a directory written by `bench/generate.py` into the
traits the example recipe uses, per account and per contact, and prints how
many contacts in each `(lifecycle, job_role)` group each threshold would
qualify, so the recipe's rules can be picked with the data in view.

Usage::

    python bench/summary.py data --as-of 2026-12-01T00:00:00Z
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

import orjson

FREE_MAIL = frozenset({"gmail.com", "yahoo.com", "outlook.com", "hotmail.com"})
LIFECYCLES = ("Trial", "Customer", "Churned")
API_THRESHOLDS = (100, 250, 500, 1000)
USER_THRESHOLDS = (2, 3, 5)
INTEGRATION_BANDS = ((0, "0"), (1, "1-4"), (5, "5-9"), (10, "10+"))
MIN_SEGMENT = 500
PERCENTILES = (50, 75, 90, 95, 99)


@dataclass(frozen=True, slots=True)
class ContactRow:
    """The parts of a contact the thresholds look at."""

    id: str
    lifecycle: str
    job_role: str
    account: str | None


@dataclass(slots=True)
class AccountTraits:
    """Traits of one account, folded from its contacts' events."""

    api_calls_30d: int = 0
    active_users_30d: set[str] = field(default_factory=set)
    integrations: set[str] = field(default_factory=set)


def open_text(path: Path) -> IO[str]:
    """Open a text file for reading, gunzipping it when its name ends in .gz."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def find_file(directory: Path, stem: str) -> Path:
    """Return `stem.csv` or `stem.csv.gz` in `directory`, whichever exists."""
    for name in (f"{stem}.csv", f"{stem}.csv.gz"):
        if (directory / name).exists():
            return directory / name
    raise FileNotFoundError(f"neither {stem}.csv nor {stem}.csv.gz in {directory}")


def read_csv(path: Path) -> Iterator[dict[str, str]]:
    """Yield the rows of a CSV file as dicts keyed by its header."""
    with open_text(path) as text:
        yield from csv.DictReader(text)


def lifecycle(status: str, plan: str) -> str:
    """Return the lifecycle stage the example recipe derives."""
    if status == "live":
        return "Trial" if plan in ("free", "trial") else "Customer"
    return "Churned"


def account_of(row: dict[str, str], domains: frozenset[str]) -> str | None:
    """Return the account domain a contact joins, or None.

    The company_domain cell wins; without it the email's domain is used,
    unless it is a free-mail provider's, which says nothing about the account.
    """
    domain = row["company_domain"] or row["email"].rpartition("@")[2].lower()
    if domain in FREE_MAIL or domain not in domains:
        return None
    return domain


def load_contacts(directory: Path) -> list[ContactRow]:
    """Read companies and contacts and join each contact to its account."""
    domains = frozenset(
        row["domain"] for row in read_csv(find_file(directory, "companies"))
    )
    return [
        ContactRow(
            id=row["id"],
            lifecycle=lifecycle(row["status"], row["plan"]),
            job_role=row["job_role"],
            account=account_of(row, domains),
        )
        for row in read_csv(find_file(directory, "contacts"))
    ]


def read_events(directory: Path) -> Iterator[dict[str, object]]:
    """Yield every event of the directory's event files, file by file."""
    for path in sorted((directory / "events").glob("events-*.jsonl*")):
        with open_text(path) as text:
            for line in text:
                yield orjson.loads(line)


def fold_events(
    events: Iterable[dict[str, object]], contacts: Sequence[ContactRow], as_of: datetime
) -> tuple[dict[str, AccountTraits], set[str]]:
    """Fold events into account traits and the set of contacts who invited.

    Returns:
        Traits per account domain, and the ids of contacts with a team_invited
        event.
    """
    accounts = {c.id: c.account for c in contacts}
    since = as_of - timedelta(days=30)
    traits: dict[str, AccountTraits] = defaultdict(AccountTraits)
    invited: set[str] = set()
    for event in events:
        if event["type"] != "track":
            continue
        user, name = str(event["userId"]), event["event"]
        if name == "team_invited":
            invited.add(user)
        account = accounts.get(user)
        if account is None:
            continue
        fold_track(traits[account], event, user, since <= parse_time(event) < as_of)
    return traits, invited


def fold_track(
    traits: AccountTraits, event: dict[str, object], user: str, recent: bool
) -> None:
    """Add one track event to its account's traits."""
    name = event["event"]
    if name == "integration_added":
        properties = event["properties"]
        assert isinstance(properties, dict)
        traits.integrations.add(str(properties["integration"]))
    if recent:
        traits.active_users_30d.add(user)
        if name == "api_call":
            traits.api_calls_30d += 1


def parse_time(event: dict[str, object]) -> datetime:
    """Return an event's timestamp as an aware datetime."""
    return datetime.fromisoformat(str(event["timestamp"]))


def percentile(values: Sequence[int], pct: int) -> int:
    """Return the nearest-rank percentile of sorted `values`."""
    if not values:
        return 0
    rank = max(1, -(-pct * len(values) // 100))
    return values[rank - 1]


def distribution(name: str, values: Iterable[int]) -> str:
    """Return one line with the percentiles and maximum of `values`."""
    ordered = sorted(values)
    cells = [f"p{pct}={percentile(ordered, pct)}" for pct in PERCENTILES]
    maximum = ordered[-1] if ordered else 0
    return f"{name:<18} n={len(ordered)} " + " ".join(cells) + f" max={maximum}"


def group_order(contacts: Sequence[ContactRow]) -> list[tuple[str, str]]:
    """Return the (lifecycle, job_role) groups, lifecycle first, big roles first."""
    sizes = Counter((c.lifecycle, c.job_role) for c in contacts)
    return sorted(sizes, key=lambda g: (LIFECYCLES.index(g[0]), -sizes[g], g[1]))


def cell(count: int) -> str:
    """Return a table cell, starred when the count reaches the segment minimum."""
    return f"{count}*" if count >= MIN_SEGMENT else str(count)


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """Return a plain text table, the first column left-aligned."""
    lines = [f"{header[0]:<26}" + "".join(f"{h:>8}" for h in header[1:])]
    for row in rows:
        lines.append(f"{row[0]!s:<26}" + "".join(f"{c!s:>8}" for c in row[1:]))
    return lines


def threshold_report(
    contacts: Sequence[ContactRow], traits: dict[str, AccountTraits]
) -> list[str]:
    """Return the table of qualified contacts per group and threshold pair."""
    pairs = [(a, u) for a in API_THRESHOLDS for u in USER_THRESHOLDS]
    qualified: Counter[tuple[str, str, int, int]] = Counter()
    for contact in contacts:
        account = traits.get(contact.account) if contact.account else None
        if account is None:
            continue
        for a, u in pairs:
            if account.api_calls_30d >= a and len(account.active_users_30d) >= u:
                qualified[contact.lifecycle, contact.job_role, a, u] += 1
    header = ["group (api_calls/users)", *(f"{a}/{u}" for a, u in pairs)]
    rows = [
        [f"{lc}: {role}", *(cell(qualified[lc, role, a, u]) for a, u in pairs)]
        for lc, role in group_order(contacts)
    ]
    accounts = [
        sum(
            1
            for t in traits.values()
            if t.api_calls_30d >= a and len(t.active_users_30d) >= u
        )
        for a, u in pairs
    ]
    return table(header, [*rows, ["qualifying accounts", *accounts]])


def band(count: int) -> str:
    """Return the integration band label of a distinct-integration count."""
    return [label for low, label in INTEGRATION_BANDS if count >= low][-1]


def group_report(
    contacts: Sequence[ContactRow],
    traits: dict[str, AccountTraits],
    invited: set[str],
) -> list[str]:
    """Return the table of group sizes, inviters and integration bands."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for c in contacts:
        counts[c.lifecycle, c.job_role, "all"] += 1
        counts[c.lifecycle, c.job_role, "invited"] += c.id in invited
        account = traits.get(c.account) if c.account else None
        integrations = len(account.integrations) if account else 0
        counts[c.lifecycle, c.job_role, band(integrations)] += 1
    columns = ["all", "invited", *(label for _, label in INTEGRATION_BANDS)]
    header = ["group (integrations)", *columns]
    rows = [
        [f"{lc}: {role}", *(cell(counts[lc, role, col]) for col in columns)]
        for lc, role in group_order(contacts)
    ]
    return table(header, rows)


def report(directory: Path, as_of: datetime) -> str:
    """Return the whole report for a generated directory."""
    contacts = load_contacts(directory)
    traits, invited = fold_events(read_events(directory), contacts, as_of)
    joined = {c.account for c in contacts if c.account}
    every = [traits.get(domain, AccountTraits()) for domain in sorted(joined)]
    lines = [
        f"{len(contacts)} contacts, {len(joined)} accounts with contacts, "
        f"as of {as_of.isoformat()}; * marks {MIN_SEGMENT}+ contacts",
        "",
        "Per account, last 30 days:",
        distribution("api_calls_30d", (t.api_calls_30d for t in every)),
        distribution("active_users_30d", (len(t.active_users_30d) for t in every)),
        distribution("integrations", (len(t.integrations) for t in every)),
        "",
        "Qualified contacts: account api_calls_30d >= A and active_users_30d >= U",
        *threshold_report(contacts, traits),
        "",
        "Group sizes, team_invited ever, and account integration bands:",
        *group_report(contacts, traits, invited),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the report for the directory named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--as-of", default="2026-12-01T00:00:00Z")
    args = parser.parse_args(argv)
    print(report(args.directory, datetime.fromisoformat(args.as_of)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
