"""The example recipe over the bundled data, checked against an independent reckoning.

`pqlhub segments` must agree, member for member, with a plain script written here
from the recipe's text alone: it reads `data/` with the gzip, csv and json modules
and applies the recipe's rules directly, sharing no code with pqlhub.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from .conftest import ROOT, Cli

DATA = ROOT / "data"
AS_OF = datetime(2026, 12, 1, tzinfo=UTC)
EARLIER = datetime(2026, 10, 2, tzinfo=UTC)
WINDOW = timedelta(days=30)
MIN_SIZE = 500
SEGMENT_IDS = ("qualified", "team_invited", "integrations", "likely_buyers")
# The mailbox providers of the sample data (and Google's other): never an account.
FREE_MAIL = frozenset(
    {"gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "yahoo.com"}
)


# --------------------------------------------------------------- the sample data


class Event(NamedTuple):
    """One Segment call of the sample data, as far as the recipe needs it."""

    kind: str
    user: str
    name: str | None
    moment: datetime
    properties: dict[str, Any]
    traits: dict[str, Any]


@dataclass(frozen=True)
class Sample:
    """The bundled data: contacts by key, and every event in file order."""

    contacts: dict[str, dict[str, str]]
    events: list[Event]


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle)


def _events() -> Iterator[Event]:
    for path in sorted((DATA / "events").glob("*.jsonl.gz")):
        with gzip.open(path, "rb") as handle:
            lines = handle.read().rstrip(b"\n")
        # One array per file decodes twice as fast as one call per line; a JSON
        # line holds no raw line break, so joining the lines with commas is safe.
        for call in json.loads(b"[" + lines.replace(b"\n", b",") + b"]"):
            yield Event(
                kind=call["type"],
                user=call["userId"],
                name=call.get("event"),
                moment=datetime.fromisoformat(call["timestamp"]),
                properties=call.get("properties", {}),
                traits=call.get("traits", {}),
            )


@pytest.fixture(scope="module")
def sample() -> Sample:
    contacts = {row["id"]: row for row in _csv_rows(DATA / "contacts.csv.gz")}
    return Sample(contacts, list(_events()))


# ------------------------------------------------------- the recipe, by hand


@dataclass
class Reckoning:
    """What the example recipe says about each contact, worked out by hand."""

    membership: dict[str, list[str]]
    segment_of: dict[str, dict[str, str]]
    api_calls: dict[str, int]
    active_users: dict[str, int]
    account_of: dict[str, str | None]


def _account(contact: dict[str, str]) -> str | None:
    if contact["company_domain"]:
        return contact["company_domain"].lower()
    domain = contact["email"].rpartition("@")[2].lower()
    return None if not domain or domain in FREE_MAIL else domain


def _lifecycle(contact: dict[str, str]) -> str:
    if contact["status"] == "live" and contact["plan"] in ("free", "trial"):
        return "Trial"
    return "Customer" if contact["status"] == "live" else "Churned"


def _band(count: int) -> str:
    if count == 0:
        return "0"
    if count < 5:
        return "1-4"
    return "5-9" if count < 10 else "10+"


def _likely_buyer(api_calls: int, active_users: int, reports: int) -> bool:
    score = -4.0 + 0.004 * api_calls + 0.3 * active_users + 0.2 * reports
    return 1 / (1 + math.exp(-score)) >= 0.7


@dataclass
class Usage:
    """The example recipe's traits, counted from the events up to one moment."""

    contacts: dict[str, dict[str, str]]
    api_calls: Counter[str] = field(default_factory=Counter)
    active: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    integrations: defaultdict[str, set[str]] = field(
        default_factory=lambda: defaultdict(set)
    )
    reports: Counter[str] = field(default_factory=Counter)
    invited: set[str] = field(default_factory=set)


def _usage(sample: Sample, account_of: dict[str, str | None], as_of: datetime) -> Usage:
    usage = Usage({key: dict(row) for key, row in sample.contacts.items()})
    for event in sample.events:
        if event.moment > as_of or event.user not in usage.contacts:
            continue
        if event.kind == "identify":
            known = {k: v for k, v in event.traits.items() if v is not None}
            usage.contacts[event.user].update(known)
        if event.kind != "track":
            continue
        recent = event.moment >= as_of - WINDOW
        account = account_of[event.user]
        if account is not None:
            if recent:
                usage.active[account].add(event.user)
            if recent and event.name == "api_call":
                usage.api_calls[account] += 1
            if event.name == "integration_added":
                usage.integrations[account].add(event.properties["integration"])
        if event.name == "team_invited":
            usage.invited.add(event.user)
        if event.name == "report_created" and recent:
            usage.reports[event.user] += 1
    return usage


def _segments_of(key: str, account: str | None, usage: Usage) -> dict[str, str]:
    contact = usage.contacts[key]
    lifecycle, role = _lifecycle(contact), contact["job_role"]
    calls = usage.api_calls[account] if account else 0
    users = len(usage.active[account]) if account else 0
    found: dict[str, str] = {}
    if role and account and calls >= 500 and users >= 3:
        found["qualified"] = f"{lifecycle}: {role} - Qualified"
    if role and key in usage.invited and lifecycle != "Churned":
        found["team_invited"] = f"{lifecycle}: {role} - Team Invited"
    if lifecycle == "Trial" and account:
        band = _band(len(usage.integrations[account]))
        found["integrations"] = f"{lifecycle}: {band} Integrations"
    if lifecycle == "Trial" and _likely_buyer(calls, users, usage.reports[key]):
        found["likely_buyers"] = "Trial: Likely Buyers"
    return found


def reckon(sample: Sample, as_of: datetime) -> Reckoning:
    """Apply the example recipe to the sample data, in plain Python."""
    account_of = {key: _account(row) for key, row in sample.contacts.items()}
    usage = _usage(sample, account_of, as_of)
    segment_of = {key: _segments_of(key, account_of[key], usage) for key in account_of}
    # A name without placeholders is a segment even when nobody is in it.
    membership: defaultdict[str, list[str]] = defaultdict(list)
    membership["Trial: Likely Buyers"] = []
    for key in sorted(segment_of):
        for name in segment_of[key].values():
            membership[name].append(key)
    return Reckoning(
        membership=dict(membership),
        segment_of=segment_of,
        api_calls=dict(usage.api_calls),
        active_users={account: len(users) for account, users in usage.active.items()},
        account_of=account_of,
    )


@pytest.fixture(scope="module")
def expected(sample: Sample) -> Reckoning:
    return reckon(sample, AS_OF)


# ----------------------------------------------------------------- pqlhub's word


@pytest.fixture(scope="module")
def root_cli() -> Cli:
    return Cli(ROOT)


@pytest.fixture(scope="module")
def computed(root_cli: Cli, request: pytest.FixtureRequest) -> dict[str, Any]:
    args = ("segments", "pqlhub.toml", "--format", "json", "--members")
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(root_cli, *args)
        # Read the sample data while pqlhub works: the two take as long.
        request.getfixturevalue("sample")
        result = running.result()
    assert result.code == 0, result.stderr
    output: dict[str, Any] = json.loads(result.stdout)
    return output


def _membership(output: dict[str, Any]) -> dict[str, list[str]]:
    return {segment["name"]: segment["members"] for segment in output["segments"]}


def _verdicts(text: str) -> dict[str, bool]:
    found = re.findall(r"^  (IN |OUT) (\w+)", text, re.MULTILINE)
    return {segment: mark == "IN " for mark, segment in found}


def test_example_segments_match_an_independent_reckoning(
    computed: dict[str, Any], expected: Reckoning
) -> None:
    membership = _membership(computed)

    assert computed["contacts"] == 20_000
    assert sorted(membership) == sorted(expected.membership)
    for name, members in expected.membership.items():
        assert membership[name] == members, name


def test_example_segments_flag_those_below_the_minimum_size(
    computed: dict[str, Any], expected: Reckoning
) -> None:
    flags = {segment["name"]: segment["flags"] for segment in computed["segments"]}

    for name, members in expected.membership.items():
        small = len(members) < MIN_SIZE
        assert flags[name] == (["below_min_size"] if small else []), name


def test_example_segments_come_in_recipe_order_then_by_name(
    computed: dict[str, Any],
) -> None:
    ids = [segment["id"] for segment in computed["segments"]]
    bands = [
        segment["values"]["integrationBand"]
        for segment in computed["segments"]
        if segment["id"] == "integrations"
    ]

    assert tuple(dict.fromkeys(ids)) == SEGMENT_IDS
    assert bands == ["0", "1-4", "5-9", "10+"]


def _pick(expected: Reckoning, qualified: bool) -> str:
    # A contact in team_invited too, so that the explanation has both IN and OUT.
    for key, segments in sorted(expected.segment_of.items()):
        if ("qualified" in segments) == qualified and "team_invited" in segments:
            return key
    raise AssertionError("the sample data has no such contact")


@pytest.mark.parametrize("qualified", [True, False], ids=["qualified", "not-qualified"])
def test_explain_names_each_segment_and_the_deciding_values(
    root_cli: Cli, computed: dict[str, Any], expected: Reckoning, qualified: bool
) -> None:
    key = _pick(expected, qualified)
    account = expected.account_of[key]
    api_calls = expected.api_calls.get(account or "", 0)
    active_users = expected.active_users.get(account or "", 0)
    in_qualified = {
        member
        for segment in computed["segments"]
        if segment["id"] == "qualified"
        for member in segment["members"]
    }

    result = root_cli("explain", "pqlhub.toml", key)

    assert result.code == 0, result.stderr
    assert (key in in_qualified) is qualified
    assert result.stdout.startswith(f"Contact {key}\n")
    assert _verdicts(result.stdout) == {
        segment: segment in expected.segment_of[key] for segment in SEGMENT_IDS
    }
    mark = "yes" if api_calls >= 500 else "no "
    assert (
        f"{mark}  account.api_calls >= 500   [account.api_calls={api_calls}]"
        in result.stdout
    )
    mark = "yes" if active_users >= 3 else "no "
    assert (
        f"{mark}  account.active_users >= 3   [account.active_users={active_users}]"
        in result.stdout
    )
    assert "yes  team_invited   [team_invited=true]" in result.stdout
    if qualified:
        assert f"IN  qualified -> {expected.segment_of[key]['qualified']}" in (
            result.stdout
        )


def test_run_prints_what_it_read_and_the_segments(
    cli: Cli, sample: Sample, expected: Reckoning
) -> None:
    # A run delivers to the recipe's destinations and keeps a ledger beside the
    # recipe: run a copy, so that the repository keeps no output of the test.
    (cli.cwd / "pqlhub.toml").write_text(
        (ROOT / "pqlhub.toml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (cli.cwd / "data").symlink_to(DATA, target_is_directory=True)

    result = cli("run", "pqlhub.toml")

    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [re.split(r"\s+", line) for line in lines[:4]] == [
        ["SOURCE", "ENTITY", "RECORDS", "SKIPPED"],
        ["companies", "account", "2,500", "0"],
        ["users", "contact", "20,000", "0"],
        ["product", "event", f"{len(sample.events):,}", "0"],
    ]
    assert "20,000 contacts, as of 2026-12-01T00:00:00+00:00." in lines
    assert "qualified: {lifecycle}: {jobRole} - Qualified" in lines
    for name, members in expected.membership.items():
        assert re.search(
            rf"^  {re.escape(name)}\s+{len(members):,}\b", result.stdout, re.MULTILINE
        ), name


def test_as_of_earlier_changes_window_results(
    root_cli: Cli, sample: Sample, expected: Reckoning
) -> None:
    earlier = reckon(sample, EARLIER)
    account = max(expected.api_calls, key=expected.api_calls.__getitem__)
    key = next(k for k, a in sorted(expected.account_of.items()) if a == account)

    result = root_cli(
        "explain", "pqlhub.toml", key, "--as-of", "2026-10-02", "--format", "json"
    )

    assert result.code == 0, result.stderr
    explanation = json.loads(result.stdout)
    values = explanation["values"]
    assert values["account.api_calls"] == earlier.api_calls.get(account, 0)
    assert values["account.active_users"] == earlier.active_users.get(account, 0)
    assert values["account.api_calls"] != expected.api_calls[account]
    assert {v["id"]: v["matched"] for v in explanation["segments"]} == {
        segment: segment in earlier.segment_of[key] for segment in SEGMENT_IDS
    }
