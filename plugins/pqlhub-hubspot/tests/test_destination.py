"""The HubSpot destination against the fake HubSpot: the destination contract, and
whole runs through real `pqlhub` subprocesses.

Every fake a test starts checks each exchange against HubSpot's OpenAPI files, and
the `make_fake` fixture fails the test if any broke them: every request the
destination sends here is one the official description allows.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import pytest

from pqlhub import Batch, Destination, DestinationContext, OutcomeStatus, Secret
from pqlhub.http import HttpClient, RateLimiter, RetryPolicy
from pqlhub.sync import apply_batch
from pqlhub.testing import RecordingSleep, RemoteDestinationContract, make_changes
from pqlhub_hubspot.destination import HubSpotDestination, option_value
from pqlhub_hubspot.fake import ALL_SCOPES, FakeHubSpot, RecordedRequest

from .conftest import MakeFake, checked_fakes

TOKEN = "pat-na1-7c2e41d9-test-5b0a"
TOKEN_ENV = "HUBSPOT_TOKEN"


@pytest.fixture
def make_fake() -> Iterator[MakeFake]:
    """Start fakes that accept `TOKEN`; after the test, stop them and fail it if
    any exchange broke HubSpot's OpenAPI files."""
    yield from checked_fakes(tokens={TOKEN: ALL_SCOPES})


def destination_for(
    hub: FakeHubSpot, context: DestinationContext, **config: Any
) -> HubSpotDestination:
    """Build the destination against a fake, with the token as a recipe gives it."""
    settings = {
        "token": Secret(TOKEN, f"env:{TOKEN_ENV}"),
        "base_url": hub.base_url,
        **config,
    }
    return HubSpotDestination(settings, context)


# ------------------------------------------------------------------ the contract


class HubSpotLists:
    """The fake HubSpot as the contract sees it: a segment is a list of its name."""

    def __init__(self, hub: FakeHubSpot) -> None:
        self.hub = hub

    @property
    def members(self) -> set[tuple[str, str]]:
        return {
            (lst["name"], email)
            for lst in self.hub.lists.values()
            for email in self.hub.crm.member_emails(lst)
        }

    def fail_next(
        self, status: int = 500, count: int = 1, retry_after: float | None = None
    ) -> None:
        if status == 429:
            self.hub.rate_limit_next(count, retry_after=retry_after)
        else:
            self.hub.fail_next(count, status)

    def reject(self, contacts: Sequence[str]) -> None:
        self.hub.reject_inputs(contacts)

    def expire(self) -> None:
        self.hub.expire_token(TOKEN)


class HubSpotSegments(HubSpotLists):
    """The fake HubSpot seen through each contact's `pql_segments` property."""

    @property
    def members(self) -> set[tuple[str, str]]:
        return {
            (segment, contact["email"])
            for contact in self.hub.contacts.values()
            for segment in segments_of(self.hub, contact)
        }


def segments_of(hub: FakeHubSpot, contact: Mapping[str, str]) -> set[str]:
    """Return the segment names a contact's `pql_segments` options stand for."""
    definition = hub.properties.get("pql_segments", {"options": []})
    names = {option_value(o["label"]): o["label"] for o in definition["options"]}
    values = contact.get("pql_segments", "").split(";")
    return {names[value] for value in values if value}


class VirtualSleep(RecordingSleep):
    """Records waits, and moves a clock by them for the rate limiter to read.

    With the contract's own sleep the limiter reads the real clock, so a pause
    for a 429 makes it spin through recorded waits until real time catches up.
    """

    def __init__(self) -> None:
        super().__init__()
        self.offset = 0.0

    def __call__(self, seconds: float) -> None:
        super().__call__(seconds)
        self.offset += seconds

    def now(self) -> float:
        return time.monotonic() + self.offset


class HubSpotContract(RemoteDestinationContract):
    """The contract with a virtual clock; subclasses pick the actions."""

    @pytest.fixture
    def sleep(self) -> VirtualSleep:
        return VirtualSleep()

    @pytest.fixture
    def destination(
        self, fake: HubSpotLists, sleep: VirtualSleep, tmp_path: Path
    ) -> Iterator[Destination]:
        def http(**arguments: Any) -> HttpClient:
            rate = arguments.pop("rate")
            limiter = RateLimiter(rate.requests, rate.per_seconds, sleep.now, sleep)
            arguments.setdefault("policy", RetryPolicy(attempts=3, base_delay=0.01))
            return HttpClient(
                "contract", rate_limiter=limiter, sleep=sleep, **arguments
            )

        context = DestinationContext(
            name="contract",
            base_dir=tmp_path,
            logger=logging.getLogger("pqlhub.plugins.contract"),
            http_factory=http,
        )
        destination = destination_for(fake.hub, context)
        yield destination
        destination.close()

    def secrets(self, fake: HubSpotLists) -> Sequence[str]:
        return [TOKEN]


class TestHubSpotListsContract(HubSpotContract):
    enter_action = "add_to_list"
    exit_action = "remove_from_list"

    @pytest.fixture
    def fake(self, make_fake: MakeFake) -> HubSpotLists:
        return HubSpotLists(make_fake())


class TestHubSpotSegmentsContract(HubSpotContract):
    enter_action = "set_segments"
    exit_action = "set_segments"

    @pytest.fixture
    def fake(self, make_fake: MakeFake) -> HubSpotSegments:
        return HubSpotSegments(make_fake())


# ---------------------------------------------------------- concurrent batches


@pytest.fixture
def hub(make_fake: MakeFake) -> FakeHubSpot:
    """A fake that answers slowly enough for concurrent batches to overlap."""
    fake = make_fake()
    fake.slow_down(0.01)
    return fake


@pytest.fixture
def destination(hub: FakeHubSpot, tmp_path: Path) -> Iterator[HubSpotDestination]:
    """The destination in process, against `hub`."""

    def http(**arguments: Any) -> HttpClient:
        arguments.pop("rate")
        return HttpClient("crm", **arguments)

    context = DestinationContext(
        "crm", tmp_path, logging.getLogger("pqlhub.plugins.hubspot"), http_factory=http
    )
    built = destination_for(hub, context)
    yield built
    built.close()


def apply_at_once(destination: Destination, batches: Sequence[Batch]) -> list[Any]:
    """Apply batches in threads started together, as a run's workers do."""
    results: list[Any] = [None] * len(batches)

    def work(index: int) -> None:
        results[index] = apply_batch(destination, batches[index])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [outcome for outcomes in results for outcome in outcomes]


CONTACTS = [f"both-{n}@example.com" for n in range(6)]


def test_set_segments_concurrent_batches_lose_no_segment(
    hub: FakeHubSpot, destination: HubSpotDestination
) -> None:
    # The options exist, so the batches go straight to read-then-write.
    for segment in ("Alpha", "Beta", "Gamma"):
        apply_batch(
            destination,
            Batch("s", "set_segments", {}, make_changes(["x@e.io"], segment)),
        )

    outcomes = apply_at_once(
        destination,
        [
            Batch("s", "set_segments", {}, make_changes(CONTACTS, segment))
            for segment in ("Alpha", "Beta", "Gamma")
        ],
    )

    assert {o.status for o in outcomes} == {OutcomeStatus.DONE}
    held = {
        email: segments_of(hub, hub.contact_by_email(email) or {}) for email in CONTACTS
    }
    assert held == {email: {"Alpha", "Beta", "Gamma"} for email in CONTACTS}


def test_set_segments_concurrent_new_segments_keep_every_option(
    hub: FakeHubSpot, destination: HubSpotDestination
) -> None:
    names = [f"Segment {n}" for n in range(4)]

    outcomes = apply_at_once(
        destination,
        [
            Batch("s", "set_segments", {}, make_changes([f"s{n}@e.io"], name))
            for n, name in enumerate(names)
        ],
    )

    assert {o.status for o in outcomes} == {OutcomeStatus.DONE}
    labels = {o["label"] for o in hub.properties["pql_segments"]["options"]}
    assert labels == set(names)


def test_add_to_list_concurrent_batches_make_one_list(
    hub: FakeHubSpot, destination: HubSpotDestination
) -> None:
    halves = [CONTACTS[:3], CONTACTS[3:]]

    outcomes = apply_at_once(
        destination,
        [Batch("s", "add_to_list", {}, make_changes(half, "Hot")) for half in halves],
    )

    assert {o.status for o in outcomes} == {OutcomeStatus.DONE}
    assert [lst["name"] for lst in hub.lists.values()] == ["Hot"]
    assert hub.list_members("Hot") == set(CONTACTS)
    creates = [
        r for r in hub.requests if (r.method, r.path) == ("POST", "/crm/v3/lists")
    ]
    assert len(creates) == 1


def test_add_to_list_makes_the_list_again_when_it_was_deleted(
    hub: FakeHubSpot, destination: HubSpotDestination
) -> None:
    apply_batch(
        destination, Batch("s", "add_to_list", {}, make_changes(CONTACTS, "Hot"))
    )
    hub.lists.clear()

    outcomes = apply_batch(
        destination, Batch("s", "add_to_list", {}, make_changes(CONTACTS, "Hot"))
    )

    assert {o.status for o in outcomes or []} == {OutcomeStatus.DONE}
    assert hub.list_members("Hot") == set(CONTACTS)


TASK = {"subject": "Call {firstname}", "owner_id": "7001"}


def test_create_task_sent_again_after_a_crash_finds_the_first(
    hub: FakeHubSpot, destination: HubSpotDestination
) -> None:
    changes = make_changes(CONTACTS[:3], "Hot")
    apply_batch(destination, Batch("s", "create_task", TASK, changes))
    # As if the run died after HubSpot made the tasks but before they were
    # recorded: only the write-ahead marks are left.
    for change in changes:
        del destination.state[f"task:{change.id}"]

    outcomes = apply_batch(destination, Batch("s", "create_task", TASK, changes))

    assert {o.status for o in outcomes or []} == {OutcomeStatus.SKIPPED}
    assert len(hub.tasks) == 3
    assert [t["properties"]["hs_task_subject"] for t in hub.tasks] == ["Call Ada"] * 3
    assert any(r.path == "/crm/v3/objects/tasks/search" for r in hub.requests)


def test_create_task_makes_none_for_changed_fields(
    hub: FakeHubSpot, destination: HubSpotDestination
) -> None:
    apply_batch(
        destination, Batch("s", "create_task", TASK, make_changes(CONTACTS, "Hot"))
    )
    sent = len(hub.requests)

    updates = make_changes(CONTACTS, "Hot", kind="update")
    outcomes = apply_batch(destination, Batch("s", "create_task", TASK, updates))

    assert {o.status for o in outcomes or []} == {OutcomeStatus.SKIPPED}
    assert len(hub.tasks) == len(CONTACTS)
    assert hub.requests[sent:] == []


# ------------------------------------------------------------ runs, end to end

ROLES = ("Engineering", "Sales", "Marketing", "Product")
PLANS = ("free", "trial", "pro")
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov")
COLUMNS = ("id", "email", "firstname", "lastname", "job_role", "plan", "seats", "owner")

RECIPE = Template("""\
[recipe]
name = "hubspot-e2e"
min_size = 0

[sources.people]
plugin = "csv"
entity = "contact"
path = "contacts.csv"
key = "id"
fields = { seats = "integer" }

[dimensions]
jobRole = { field = "job_role" }

[segments.trial]
name = "Trial: {jobRole}"
where = "plan == 'trial'"

[segments.pro]
name = "Pro: {jobRole}"
where = "plan == 'pro'"

[segments.hot]
name = "Hot Trial"
where = "plan == 'trial' and seats >= 8"

[destinations.crm]
plugin = "hubspot"
token = { env = "HUBSPOT_TOKEN" }
base_url = "$base_url"
rate_limit = 1000
$syncs
""")

CONTACTS_SYNC = """
[[syncs]]
name = "contacts"
destination = "crm"
segments = ["trial", "pro"]
on_enter = { action = "upsert_contact" }
fields = { email = "email", firstname = "firstname", lastname = "lastname", \
jobtitle = "job_role" }
"""
SEGMENTS_SYNC = """
[[syncs]]
name = "segments"
destination = "crm"
segments = ["trial", "pro", "hot"]
on_enter = { action = "set_segments" }
on_exit = { action = "set_segments" }
fields = { email = "email" }
"""
LISTS_SYNC = """
[[syncs]]
name = "lists"
destination = "crm"
segments = ["trial"]
on_enter = { action = "add_to_list" }
on_exit = { action = "remove_from_list" }
fields = { email = "email" }
"""
TASKS_SYNC = """
[[syncs]]
name = "tasks"
destination = "crm"
segments = ["hot"]
on_enter = { action = "create_task", subject = "Call {firstname} {lastname} \
({jobtitle})", body = "{firstname} has {seats} seats on a trial.", \
owner_field = "owner", due_in_days = 2 }
fields = { email = "email", firstname = "firstname", lastname = "lastname", \
jobtitle = "job_role", seats = "seats", owner = "owner" }
"""
ALL_SYNCS = CONTACTS_SYNC + SEGMENTS_SYNC + LISTS_SYNC + TASKS_SYNC

Row = dict[str, str]


def people(count: int) -> list[Row]:
    """Contacts of four job roles on three plans; a fifth of trials are hot."""
    return [
        {
            "id": f"u{n:05d}",
            "email": f"user{n:05d}@example.com",
            "firstname": FIRST_NAMES[n % len(FIRST_NAMES)],
            "lastname": LAST_NAMES[n % len(LAST_NAMES)],
            "job_role": ROLES[n % len(ROLES)],
            "plan": PLANS[n // len(ROLES) % len(PLANS)],
            "seats": str(n % 10),
            "owner": str(7001 + n % 3),
        }
        for n in range(count)
    ]


def segments_for(row: Row) -> set[str]:
    """The segments the recipe puts a contact in."""
    found = set()
    if row["plan"] == "trial":
        found.add(f"Trial: {row['job_role']}")
        if int(row["seats"]) >= 8:
            found.add("Hot Trial")
    if row["plan"] == "pro":
        found.add(f"Pro: {row['job_role']}")
    return found


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


class Project:
    """A recipe folder over a fake HubSpot, run with real `pqlhub` subprocesses."""

    def __init__(self, folder: Path, hub: FakeHubSpot, syncs: str) -> None:
        self.folder = folder
        self.hub = hub
        text = RECIPE.substitute(base_url=hub.base_url, syncs=syncs)
        (folder / "recipe.toml").write_text(text, encoding="utf-8")
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("PQLHUB_")
        }
        self.env[TOKEN_ENV] = TOKEN

    def write(self, rows: Sequence[Row]) -> None:
        with (self.folder / "contacts.csv").open("w", newline="") as out:
            writer = csv.DictWriter(out, COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    def __call__(self, *args: str, token: str = TOKEN) -> Result:
        done = subprocess.run(
            [sys.executable, "-m", "pqlhub", *args],
            cwd=self.folder,
            env={**self.env, TOKEN_ENV: token},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def run(self, *options: str) -> Result:
        return self(*options, "run", "recipe.toml", "--format", "json")

    def ledger_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in (self.folder / ".pqlhub").iterdir())


@pytest.fixture
def project(make_fake: MakeFake, tmp_path: Path) -> Callable[..., Project]:
    def make(syncs: str = ALL_SYNCS, **fake_options: Any) -> Project:
        options = {"rate_limit": 1000, **fake_options}
        return Project(tmp_path, make_fake(**options), syncs)

    return make


def writes(requests: Sequence[RecordedRequest]) -> list[str]:
    """The requests that could change something in HubSpot, as `METHOD path`."""
    reads = ("/batch/read", "/search")
    return [
        f"{r.method} {r.path}"
        for r in requests
        if r.method != "GET" and not (r.method == "POST" and r.path.endswith(reads))
    ]


def expected_contacts(rows: Sequence[Row]) -> dict[str, dict[str, str]]:
    """Email to the properties the syncs give each contact of a segment."""
    return {
        row["email"]: {
            "firstname": row["firstname"],
            "lastname": row["lastname"],
            "jobtitle": row["job_role"],
            "pql_segments": ";".join(sorted(map(option_value, segments_for(row)))),
        }
        for row in rows
        if segments_for(row)
    }


def held_contacts(hub: FakeHubSpot) -> dict[str, dict[str, str]]:
    names = ("firstname", "lastname", "jobtitle", "pql_segments")
    return {
        contact["email"]: {name: contact.get(name, "") for name in names}
        for contact in hub.contacts.values()
    }


def expected_lists(rows: Sequence[Row]) -> dict[str, set[str]]:
    lists: dict[str, set[str]] = {f"Trial: {role}": set() for role in ROLES}
    for row in rows:
        if row["plan"] == "trial":
            lists[f"Trial: {row['job_role']}"].add(row["email"])
    return lists


def held_lists(hub: FakeHubSpot) -> dict[str, set[str]]:
    return {lst["name"]: hub.list_members(lst["name"]) for lst in hub.lists.values()}


def held_tasks(hub: FakeHubSpot) -> dict[str, list[dict[str, str]]]:
    """Email to the tasks associated with the contact."""
    emails = {rid: contact["email"] for rid, contact in hub.contacts.items()}
    tasks: dict[str, list[dict[str, str]]] = {}
    for task in hub.tasks:
        for contact_id in task["contactIds"]:
            tasks.setdefault(emails[contact_id], []).append(task["properties"])
    return tasks


def test_runs_keep_hubspot_in_step_with_the_segments(
    project: Callable[..., Project],
) -> None:
    crm = project()
    rows = people(5000)
    crm.write(rows)

    first = crm.run()

    assert first.code == 0, first.output
    assert {s["sync"]: s["failed"] + s["retry"] for s in first.json()["syncs"]} == {
        "contacts": 0,
        "segments": 0,
        "lists": 0,
        "tasks": 0,
    }
    hub = crm.hub
    assert held_contacts(hub) == expected_contacts(rows)
    assert held_lists(hub) == expected_lists(rows)
    hot = {row["email"]: row for row in rows if "Hot Trial" in segments_for(row)}
    tasks = held_tasks(hub)
    assert set(tasks) == set(hot)
    for email, (task,) in tasks.items():
        row = hot[email]
        name = f"{row['firstname']} {row['lastname']}"
        assert task["hs_task_subject"] == f"Call {name} ({row['job_role']})"
        assert task["hs_task_body"].startswith(f"{row['firstname']} has ")
        assert task["hubspot_owner_id"] == row["owner"]

    sent = len(hub.requests)
    second = crm.run()

    assert second.code == 0, second.output
    assert writes(hub.requests[sent:]) == []

    # A tenth of the trials move to the free plan and leave their segments; some
    # hot contacts who stay are renamed, which changes their mapped fields.
    changed = [dict(row) for row in rows]
    trials = [row for row in changed if row["plan"] == "trial"]
    leavers = trials[::10]
    for row in leavers:
        row["plan"] = "free"
    renamed = [row for row in trials if row not in leavers and int(row["seats"]) >= 8]
    for row in renamed[:25]:
        row["firstname"] = "Renamed"
    crm.write(changed)
    sent = len(hub.requests)

    third = crm.run()

    assert third.code == 0, third.output
    made = writes(hub.requests[sent:])
    assert "POST /crm/v3/objects/tasks/batch/create" not in made
    expected = expected_contacts(changed)
    for row in leavers:
        expected[row["email"]] = {
            "firstname": row["firstname"],
            "lastname": row["lastname"],
            "jobtitle": row["job_role"],
            "pql_segments": "",
        }
    assert held_contacts(hub) == expected
    assert held_lists(hub) == expected_lists(changed)
    assert {email: len(found) for email, found in held_tasks(hub).items()} == (
        dict.fromkeys(hot, 1)
    )


def test_run_one_input_refused_in_a_207_fails_alone(
    project: Callable[..., Project],
) -> None:
    crm = project(CONTACTS_SYNC)
    rows = people(400)
    crm.write(rows)
    bad = next(row for row in rows if segments_for(row))
    crm.hub.reject_inputs([bad["email"]])

    ran = crm.run()
    failures = crm("failures", "recipe.toml", "--format", "json").json()["failures"]

    assert ran.code == 3, ran.output
    (result,) = ran.json()["syncs"]
    assert (result["failed"], result["done"]) == (1, result["planned"] - 1)
    assert [(f["contact"], f["kind"], f["reason"]) for f in failures] == [
        (bad["id"], "data", f"Email address {bad['email']} is invalid")
    ]
    assert set(held_contacts(crm.hub)) == set(expected_contacts(rows)) - {bad["email"]}


def test_run_daily_limit_stops_the_sync_until_a_later_run(
    project: Callable[..., Project],
) -> None:
    crm = project(CONTACTS_SYNC)
    rows = people(1200)
    crm.write(rows)
    crm.hub.rate_limit_next(policy="DAILY")

    stopped = crm.run()

    assert stopped.code == 1, stopped.output
    (first,) = stopped.json()["syncs"]
    assert "Sync 'contacts' stopped: destination 'crm' refused it" in first["stopped"]
    assert "HubSpot's daily API limit is reached" in first["stopped"]
    assert "the sync stops until then" in stopped.stderr
    assert first["done"] < first["planned"]
    assert len(crm.hub.contacts) == first["done"]

    resumed = crm.run()

    assert resumed.code == 0, resumed.output
    (second,) = resumed.json()["syncs"]
    assert second["planned"] == second["done"] == first["planned"] - first["done"]
    assert held_contacts(crm.hub) == {
        email: {**values, "pql_segments": ""}
        for email, values in expected_contacts(rows).items()
    }


def test_run_ten_secondly_limit_waits_and_goes_on(
    project: Callable[..., Project],
) -> None:
    crm = project(CONTACTS_SYNC)
    rows = people(400)
    crm.write(rows)
    crm.hub.rate_limit_next(2, retry_after=0.2)

    ran = crm.run()

    assert ran.code == 0, ran.output
    assert crm.hub.throttled == 2
    assert "ten_secondly_rolling limit answered 429" in ran.stderr
    assert "Retrying in 0.2 s" in ran.stderr
    assert set(held_contacts(crm.hub)) == set(expected_contacts(rows))


def test_run_expired_token_stops_the_sync_naming_the_destination(
    project: Callable[..., Project],
) -> None:
    crm = project(CONTACTS_SYNC)
    crm.write(people(200))
    crm.hub.expire_token(TOKEN)

    ran = crm.run()

    assert ran.code == 1, ran.output
    (result,) = ran.json()["syncs"]
    assert "destination 'crm' refused it" in result["stopped"]
    assert "HTTP 401" in result["stopped"]
    assert "Check the token of destination 'crm'" in result["stopped"]
    assert crm.hub.contacts == {}


def test_run_token_without_a_scope_stops_the_sync_naming_it(
    project: Callable[..., Project],
) -> None:
    # HubSpot's files let an access-groups scope stand in for crm.lists.write.
    scopes = ALL_SCOPES - {"crm.lists.write", "cms.membership.access_groups.write"}
    crm = project(LISTS_SYNC, tokens={TOKEN: scopes})
    crm.write(people(200))

    ran = crm.run()

    assert ran.code == 1, ran.output
    (result,) = ran.json()["syncs"]
    assert "destination 'crm' refused it" in result["stopped"]
    assert "lacks the scope crm.lists.write" in result["stopped"]
    assert crm.hub.lists == {}


def test_check_passes_with_a_good_token_and_changes_nothing(
    project: Callable[..., Project],
) -> None:
    crm = project()
    crm.write(people(50))

    checked = crm("check", "recipe.toml", "--format", "json")

    assert checked.code == 0, checked.output
    found = {
        c["name"]: c["ok"] for c in checked.json()["checks"] if "crm" in c["block"]
    }
    assert found == {
        "crm.objects.contacts.read": True,
        "crm.schemas.contacts.read": True,
        "crm.lists.read": True,
    }
    assert crm.hub.requests, "the check sent nothing"
    assert writes(crm.hub.requests) == []


def test_check_names_the_scope_a_token_lacks(
    project: Callable[..., Project],
) -> None:
    scopes = ALL_SCOPES - {"crm.lists.read", "crm.lists.write"}
    crm = project(tokens={TOKEN: scopes})
    crm.write(people(50))

    checked = crm("check", "recipe.toml")

    assert checked.code == 1, checked.output
    (line,) = [line for line in checked.stdout.splitlines() if " NO " in line]
    assert "crm.lists.read" in line
    assert "lacks the scope crm.lists.read" in line
    assert writes(crm.hub.requests) == []
    assert crm.hub.state()["contacts"] == {}
    assert crm.hub.state()["lists"] == {}


def test_token_never_reaches_output_or_ledger(
    project: Callable[..., Project],
) -> None:
    crm = project(CONTACTS_SYNC + TASKS_SYNC)
    crm.write(people(300))
    crm.hub.fail_next(1, 503)

    ran = crm("-vv", "run", "recipe.toml")
    crm.hub.expire_token(TOKEN)
    crm.write(people(320))
    refused = crm("-vv", "run", "recipe.toml")

    assert ran.code == 0, ran.output
    assert refused.code == 1, refused.output
    for result in (ran, refused):
        assert "POST" in result.stderr, "-vv logged no requests"
        assert TOKEN not in result.stdout
        assert TOKEN not in result.stderr
    assert TOKEN.encode() not in crm.ledger_bytes()
