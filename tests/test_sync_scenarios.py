"""The sync engine end to end: real `pqlhub` subprocesses, a real SQLite ledger, real
files, and a real webhook receiver on loopback."""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pqlhub.destinations import Webhook
from pqlhub.testing import WebhookReceiver

from .conftest import ROOT, Cli, Result

Pair = tuple[str, str]
Rows = dict[Pair, dict[str, str]]

SIGNING_SECRET = "whsec-scenario-4e1d7a9c"
CONCURRENCY = Webhook.limits.concurrency

HEAD = """\
[recipe]
name = "scenario"
min_size = 0

[sources.people]
plugin = "csv"
entity = "contact"
path = "contacts.csv"
key = "id"

[segments.live]
name = "Live"
where = "status == 'live'"
{segment}
"""

HOOK_RECIPE = (
    HEAD
    + """
[destinations.hook]
plugin = "webhook"
url = "{url}"
batch_size = {batch_size}
{destination}

[[syncs]]
name = "live-to-hook"
destination = "hook"
segments = ["live"]
on_enter = {{ action = "send" }}
on_exit = {{ action = "send" }}
fields = {{ email = "email", role = "job_role" }}
{sync}
"""
)

FILE_RECIPE = (
    HEAD
    + """
[destinations.sheet]
plugin = "file"
path = "out/members.csv"

[[syncs]]
name = "live-to-sheet"
destination = "sheet"
segments = ["live"]
on_enter = {{ action = "add" }}
on_exit = {{ action = "remove" }}
fields = {{ email = "email", role = "job_role" }}
{sync}
"""
)


# ------------------------------------------------------------------------ helpers


def people(count: int, status: str = "live", start: int = 0) -> list[dict[str, str]]:
    """Contacts `c0000`, `c0001`, ... with one status and role."""
    return [
        {
            "id": f"c{number:04d}",
            "email": f"c{number:04d}@example.com",
            "job_role": "Sales",
            "status": status,
        }
        for number in range(start, start + count)
    ]


def write_contacts(folder: Path, contacts: Sequence[Mapping[str, str]]) -> None:
    with (folder / "contacts.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["id", "email", "job_role", "status"])
        writer.writeheader()
        writer.writerows(contacts)


def hook_recipe(
    folder: Path,
    url: str,
    batch_size: int = 10,
    destination: str = "",
    sync: str = "",
    segment: str = "",
) -> None:
    text = HOOK_RECIPE.format(
        url=url,
        batch_size=batch_size,
        destination=destination,
        sync=sync,
        segment=segment,
    )
    (folder / "recipe.toml").write_text(text, encoding="utf-8")


def file_recipe(folder: Path, sync: str = "", segment: str = "") -> None:
    text = FILE_RECIPE.format(sync=sync, segment=segment)
    (folder / "recipe.toml").write_text(text, encoding="utf-8")


def run_json(cli: Cli, *args: str, env: Mapping[str, str] | None = None) -> Any:
    result = cli(*args, "--format", "json", env=env)
    assert result.stdout, result.stderr
    return json.loads(result.stdout)


def plan_counts(cli: Cli, recipe: str = "recipe.toml") -> dict[str, Any]:
    """The first sync's entry of `pqlhub plan --format json`."""
    entry: dict[str, Any] = run_json(cli, "plan", recipe)["syncs"][0]
    return entry


def export_rows(path: Path) -> Rows:
    """The file export's snapshot: (segment, contact) to the other columns."""
    rows: Rows = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            pair = (row.pop("segment"), row.pop("contact"))
            assert pair not in rows, f"{pair} appears twice in {path.name}"
            row.pop("sync")
            rows[pair] = row
    return rows


def pairs(contacts: Sequence[Mapping[str, str]], segment: str = "Live") -> set[Pair]:
    """The `(segment, contact)` pairs of these contacts."""
    return {(segment, contact["id"]) for contact in contacts}


# ------------------------------------------------------- idempotence on the example


def _copy_example(folder: Path) -> None:
    shutil.copy(ROOT / "pqlhub.toml", folder / "pqlhub.toml")
    shutil.copytree(ROOT / "data", folder / "data")


def _rewrite_contacts(path: Path, edits: Mapping[str, Mapping[str, str]]) -> None:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        names = list(reader.fieldnames or [])
        contacts = list(reader)
    for contact in contacts:
        contact.update(edits.get(contact["id"], {}))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, names, lineterminator="\n")
    writer.writeheader()
    writer.writerows(contacts)
    path.write_bytes(gzip.compress(buffer.getvalue().encode("utf-8")))


def _identified(events: Path) -> set[str]:
    """Contacts whose `identify` calls set fields (they override the contacts CSV)."""
    found = set()
    for path in events.glob("*.jsonl.gz"):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                if '"identify"' in line:
                    found.add(json.loads(line)["userId"])
    return found


def _in_trial_qualified_and_buyers(rows: Rows, skip: set[str]) -> list[Pair]:
    """`(contact, role)` of those in `Trial: <role> - Qualified` and Likely Buyers."""
    found = []
    for segment, contact in sorted(rows):
        qualified = segment.startswith("Trial: ") and segment.endswith(" - Qualified")
        if (
            qualified
            and contact not in skip
            and ("Trial: Likely Buyers", contact) in rows
        ):
            found.append((contact, segment.removeprefix("Trial: ").split(" - ")[0]))
    return found


def test_run_on_the_example_sends_each_change_once(cli: Cli, tmp_path: Path) -> None:
    _copy_example(tmp_path)
    export = tmp_path / "out" / "qualified.csv"
    original = (ROOT / "data" / "contacts.csv.gz").read_bytes()

    first = run_json(cli, "run", "pqlhub.toml")
    synced = sum(
        s["size"]
        for s in first["segments"]
        if s["id"] in ("qualified", "likely_buyers")
    )
    before = export_rows(export)
    second = run_json(cli, "run", "pqlhub.toml")

    assert first["exit_code"] == 0
    assert first["syncs"][0]["planned"] == first["plan"]["syncs"][0]["add"] == synced
    assert first["syncs"][0]["done"] == synced
    assert len(before) == synced
    assert second["exit_code"] == 0
    assert second["syncs"][0]["planned"] == 0
    assert export_rows(export) == before

    # Cancel one trial (it leaves both Trial segments and enters the Churned one),
    # move another to a new role, and change a third one's email.
    identified = _identified(tmp_path / "data" / "events")
    candidates = _in_trial_qualified_and_buyers(before, identified)
    (cancelled, old_role), (moved, role) = candidates[0], candidates[1]
    new_role = "Finance" if role != "Finance" else "Support"
    renamed = next(
        c for _, c in sorted(before) if c not in (cancelled, moved, *identified)
    )
    _rewrite_contacts(
        tmp_path / "data" / "contacts.csv.gz",
        {
            cancelled: {"status": "cancelled"},
            moved: {"job_role": new_role},
            renamed: {"email": "renamed@example.org"},
        },
    )
    expected = {key: dict(fields) for key, fields in before.items()}
    churned = (f"Churned: {old_role} - Qualified", cancelled)
    expected[churned] = {
        **before[(f"Trial: {old_role} - Qualified", cancelled)],
        "lifecycle": "Churned",
    }
    expected[(f"Trial: {new_role} - Qualified", moved)] = {
        **before[(f"Trial: {role} - Qualified", moved)],
        "job_role": new_role,
    }
    expected[("Trial: Likely Buyers", moved)]["job_role"] = new_role
    exits = {
        (f"Trial: {old_role} - Qualified", cancelled),
        ("Trial: Likely Buyers", cancelled),
        (f"Trial: {role} - Qualified", moved),
    }
    for pair in exits:
        del expected[pair]
    renamed_rows = {pair for pair in before if pair[1] == renamed}
    for pair in renamed_rows:
        expected[pair]["email"] = "renamed@example.org"

    planned = cli("plan", "pqlhub.toml", "--format", "json", "--out", "plan.json")
    changes = json.loads((tmp_path / "plan.json").read_text())["syncs"][0]["changes"]
    third = run_json(cli, "run", "pqlhub.toml")

    by_kind = {
        kind: {(c["segment"], c["contact"]) for c in changes if c["kind"] == kind}
        for kind in ("enter", "exit", "update")
    }
    assert by_kind == {
        "enter": {churned, (f"Trial: {new_role} - Qualified", moved)},
        "exit": exits,
        "update": {("Trial: Likely Buyers", moved), *renamed_rows},
    }
    counts = json.loads(planned.stdout)["syncs"][0]
    announced = (counts["add"], counts["remove"], counts["update"])
    assert announced == (2, 3, 1 + len(renamed_rows))
    assert third["exit_code"] == 0
    assert third["syncs"][0]["done"] == len(changes)
    assert export_rows(export) == expected
    assert (ROOT / "data" / "contacts.csv.gz").read_bytes() == original


# ------------------------------------------------------------------ crash safety


def _popen_run(cli: Cli) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pqlhub", "run", "recipe.toml"],
        cwd=cli.cwd,
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for_events(receiver: WebhookReceiver, at_least: int, within: float) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        received = len(receiver.events)
        if received >= at_least:
            return received
        time.sleep(0.005)
    return len(receiver.events)


def test_run_killed_midway_converges_on_the_next_run(
    cli: Cli, tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    receiver = webhook_receiver
    contacts = people(300)
    write_contacts(tmp_path, contacts)
    batch_size = 10
    hook_recipe(tmp_path, receiver.url, batch_size=batch_size)
    receiver.slow_down(0.1)

    process = _popen_run(cli)
    try:
        received = _wait_for_events(receiver, at_least=80, within=30)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    assert 0 < received < len(contacts), "the kill came too late to test anything"
    receiver.slow_down(0)
    resumed = run_json(cli, "run", "recipe.toml")
    requests = receiver.requests
    again = run_json(cli, "run", "recipe.toml")

    assert resumed["exit_code"] == 0
    assert receiver.members == pairs(contacts)
    assert {(e["segment"], e["contact"]) for e in receiver.events} == pairs(contacts)
    assert len(receiver.events) == len(contacts)
    assert receiver.duplicates <= batch_size * CONCURRENCY
    assert again["syncs"][0]["planned"] == 0
    assert receiver.requests == requests


# ------------------------------------------------------------------------ faults


def test_run_rides_out_faults_and_isolates_the_bad_record(
    cli: Cli, tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    receiver = webhook_receiver
    contacts = people(40)
    bad = contacts[17]["id"]
    write_contacts(tmp_path, contacts)
    hook_recipe(
        tmp_path,
        receiver.url,
        batch_size=5,
        destination="timeout = 0.5",
        sync="max_attempts = 2",
    )
    receiver.fail_next(429, count=2, retry_after=0.2)
    receiver.fail_next(500, count=2)
    receiver.fail_next(500, delay=1.5)  # answered after the client gave up
    receiver.reject([bad])

    first = cli("run", "recipe.toml")
    listed = cli("failures", "recipe.toml")
    entries = run_json(cli, "failures", "recipe.toml")["failures"]

    assert first.code == 3, first.stderr
    assert "1 change did not go through; see 'pqlhub failures'." in first.stdout
    for warning in ("answered HTTP 429", "answered HTTP 500", "timed out"):
        assert warning in first.stderr
    assert receiver.members == pairs(contacts) - {("Live", bad)}
    assert receiver.duplicates == 0
    assert bad in listed.stdout
    assert "HTTP 400" in listed.stdout
    assert "contact rejected" in listed.stdout
    assert [(e["contact"], e["segment"], e["change"]) for e in entries] == [
        (bad, "Live", "enter")
    ]
    assert entries[0]["kind"] == "data"
    assert entries[0]["attempts"] == 1
    assert not entries[0]["dead"]

    again = cli("run", "recipe.toml")
    dead = run_json(cli, "failures", "recipe.toml", "--dead")["failures"]
    planned = plan_counts(cli)
    requeued = cli("retry", "recipe.toml")
    receiver.accept([bad])
    last = cli("run", "recipe.toml")
    after = cli("failures", "recipe.toml")

    assert again.code == 3, again.stderr
    assert [(e["contact"], e["attempts"], e["dead"]) for e in dead] == [(bad, 2, True)]
    assert (planned["add"], planned["dead_letters"]) == (0, 1)
    assert requeued.stdout.strip() == "Re-queued 1 dead letter for the next run."
    assert last.code == 0, last.stderr
    assert receiver.members == pairs(contacts)
    assert after.stdout.strip() == "No failed changes."


# --------------------------------------------------------------- removal guard


def test_run_refuses_mass_removal_unless_forced(cli: Cli, tmp_path: Path) -> None:
    contacts = people(50)
    write_contacts(tmp_path, contacts)
    file_recipe(tmp_path)
    export = tmp_path / "out" / "members.csv"
    assert cli("run", "recipe.toml").code == 0
    staying = contacts[:10]
    write_contacts(tmp_path, staying + people(40, status="cancelled", start=10))

    blocked = cli("run", "recipe.toml")
    held = set(export_rows(export))
    forced = cli("run", "recipe.toml", "--force")

    assert blocked.code == 1
    assert "would remove 40 of the 50 contacts that 'sheet' holds (80%)" in (
        blocked.stdout
    )
    assert "more than its max_remove of 20%" in blocked.stdout
    assert "--force" in blocked.stdout
    assert held == pairs(contacts)
    assert forced.code == 0, forced.stderr
    assert set(export_rows(export)) == pairs(staying)


# ------------------------------------------------------------ skip-existing start


def test_skip_existing_records_members_then_sends_later_enters(
    cli: Cli, tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    receiver = webhook_receiver
    existing = people(20)
    write_contacts(tmp_path, existing)
    hook_recipe(tmp_path, receiver.url, sync='initial = "skip-existing"')

    first = run_json(cli, "run", "recipe.toml")
    sent_first = receiver.requests
    newcomers = people(3, start=20)
    write_contacts(tmp_path, existing + newcomers)
    second = run_json(cli, "run", "recipe.toml")

    assert first["syncs"][0]["baseline"] == len(existing)
    assert first["syncs"][0]["planned"] == 0
    assert first["exit_code"] == 0
    assert sent_first == 0
    assert second["syncs"][0]["done"] == len(newcomers)
    assert receiver.members == pairs(newcomers)
    assert len(receiver.events) == len(newcomers)


def test_skip_existing_with_nobody_yet_sends_the_first_members(
    cli: Cli, tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    receiver = webhook_receiver
    write_contacts(tmp_path, people(5, status="cancelled"))
    hook_recipe(tmp_path, receiver.url, sync='initial = "skip-existing"')
    assert cli("run", "recipe.toml").code == 0
    joined = people(4, start=5)
    write_contacts(tmp_path, people(5, status="cancelled") + joined)

    second = run_json(cli, "run", "recipe.toml")

    assert second["syncs"][0]["done"] == len(joined)
    assert receiver.members == pairs(joined)


# ------------------------------------------------------------- minimum size


def test_segment_below_enforced_minimum_is_held_back(cli: Cli, tmp_path: Path) -> None:
    contacts = people(20)
    write_contacts(tmp_path, contacts)
    file_recipe(tmp_path, segment="min_size = 10\nenforce_min_size = true")
    export = tmp_path / "out" / "members.csv"
    assert cli("run", "recipe.toml").code == 0
    write_contacts(tmp_path, contacts[:5] + people(15, status="cancelled", start=5))

    shown = cli("plan", "recipe.toml")
    ran = run_json(cli, "run", "recipe.toml")
    planned = ran["plan"]["syncs"][0]

    assert shown.code == 0
    assert "live-to-sheet: held back (below minimum size): 'Live'." in shown.stdout
    assert planned["held_back"] == ["Live"]
    assert (planned["add"], planned["remove"], planned["update"]) == (0, 0, 0)
    assert ran["syncs"][0]["planned"] == 0
    assert set(export_rows(export)) == pairs(contacts)


def test_segment_below_enforced_minimum_from_the_start_sends_nobody(
    cli: Cli, tmp_path: Path
) -> None:
    write_contacts(tmp_path, people(5))
    file_recipe(tmp_path, segment="min_size = 10\nenforce_min_size = true")

    ran = run_json(cli, "run", "recipe.toml")

    assert ran["plan"]["syncs"][0]["held_back"] == ["Live"]
    assert ran["syncs"][0]["planned"] == 0
    assert not (tmp_path / "out" / "members.csv").exists()


# --------------------------------------------------------------- signatures


SECRET_ENV = {"HOOK_SECRET": SIGNING_SECRET}
SIGNED = 'secret = { env = "HOOK_SECRET" }'


def _output(result: Result) -> str:
    return result.stdout + result.stderr


def test_webhook_signature_verifies_with_the_shared_secret(
    cli: Cli, tmp_path: Path
) -> None:
    contacts = people(12)
    write_contacts(tmp_path, contacts)
    with WebhookReceiver(secret=SIGNING_SECRET) as receiver:
        hook_recipe(tmp_path, receiver.url, batch_size=5, destination=SIGNED)

        ran = cli("-vv", "run", "recipe.toml", env=SECRET_ENV)

        assert ran.code == 0, ran.stderr
        assert receiver.bad_signatures == 0
        assert receiver.members == pairs(contacts)
    assert SIGNING_SECRET not in _output(ran)


def test_webhook_wrong_secret_stops_the_sync_without_leaking_it(
    cli: Cli, tmp_path: Path
) -> None:
    write_contacts(tmp_path, people(12))
    with WebhookReceiver(secret="another-secret-entirely") as receiver:
        hook_recipe(tmp_path, receiver.url, batch_size=5, destination=SIGNED)

        ran = cli("-vv", "run", "recipe.toml", env=SECRET_ENV)

        assert ran.code == 1
        assert receiver.bad_signatures > 0
        assert receiver.events == []
    assert "Sync 'live-to-hook' stopped: destination 'hook' refused it." in ran.stdout
    assert "HTTP 401" in ran.stdout
    assert SIGNING_SECRET not in _output(ran)
    ledger = tmp_path / ".pqlhub" / "scenario.db"
    assert SIGNING_SECRET.encode() not in ledger.read_bytes()


# ----------------------------------------------------------------- expired


def test_webhook_expired_credentials_stop_the_sync_and_keep_changes(
    cli: Cli, tmp_path: Path
) -> None:
    contacts = people(60)
    write_contacts(tmp_path, contacts)
    with WebhookReceiver() as expired:
        hook_recipe(tmp_path, expired.url, batch_size=5)
        port = urlsplit(expired.url).port
        expired.expire()

        stopped = cli("run", "recipe.toml")
        pending = plan_counts(cli)
        refused = expired.requests

    assert stopped.code == 1
    assert "Sync 'live-to-hook' stopped: destination 'hook' refused it." in (
        stopped.stdout
    )
    assert "HTTP 401" in stopped.stdout
    assert "Check the URL and headers of destination 'hook'." in stopped.stdout
    assert "Unsent changes stay pending for the next run." in stopped.stdout
    assert refused <= CONCURRENCY
    assert pending["add"] == len(contacts)
    renewed = WebhookReceiver()
    renewed.start(port or 0)  # the same URL, with credentials that work again
    try:
        resumed = cli("run", "recipe.toml")
    finally:
        renewed.stop()

    assert resumed.code == 0, resumed.stderr
    assert renewed.members == pairs(contacts)
    assert len(renewed.events) == len(contacts)


# ------------------------------------------------------------------ the ledger


def test_ledger_is_readable_by_its_owner_only(cli: Cli, tmp_path: Path) -> None:
    write_contacts(tmp_path, people(3))
    file_recipe(tmp_path)

    assert cli("run", "recipe.toml").code == 0

    ledger = tmp_path / ".pqlhub" / "scenario.db"
    for path in ledger.parent.glob(f"{ledger.name}*"):
        assert path.stat().st_mode & 0o777 == 0o600, path.name


# --------------------------------------------------------------- the plan file


def test_plan_out_writes_every_change_the_counts_announce(
    cli: Cli, tmp_path: Path
) -> None:
    contacts = people(30)
    write_contacts(tmp_path, contacts)
    file_recipe(tmp_path)
    assert cli("run", "recipe.toml").code == 0
    promoted = [{**c, "job_role": "Finance"} for c in contacts[3:7]]
    joined = people(2, start=30)
    cancelled = [{**c, "status": "cancelled"} for c in contacts[:3]]
    write_contacts(tmp_path, cancelled + promoted + contacts[7:] + joined)

    shown = cli("plan", "recipe.toml", "--format", "json", "--out", "plan.json")
    written = json.loads((tmp_path / "plan.json").read_text())["syncs"][0]

    counts = json.loads(shown.stdout)["syncs"][0]
    changes = written["changes"]
    assert shown.code == 0
    assert (counts["add"], counts["remove"], counts["update"]) == (2, 3, 4)
    assert {k: v for k, v in written.items() if k != "changes"} == counts
    assert all(
        set(c) == {"id", "kind", "contact", "segment", "fields"} for c in changes
    )
    assert len({c["id"] for c in changes}) == len(changes)
    assert sorted((c["kind"], c["contact"]) for c in changes) == sorted(
        [("enter", c["id"]) for c in joined]
        + [("exit", c["id"]) for c in cancelled]
        + [("update", c["id"]) for c in promoted]
    )
    fields = {c["contact"]: c["fields"] for c in changes if c["kind"] != "exit"}
    assert fields["c0003"] == {"email": "c0003@example.com", "role": "Finance"}
    assert fields["c0030"] == {"email": "c0030@example.com", "role": "Sales"}
    # An exit carries the fields its contact was last sent with.
    exits = {c["contact"]: c["fields"] for c in changes if c["kind"] == "exit"}
    assert all(exits[c["id"]]["email"] == c["email"] for c in cancelled)


# ---------------------------------------------------------- validating syncs


BAD_SYNCS = """
[destinations.hook]
plugin = "webhook"
url = "http://127.0.0.1:9/hook"

[destinations.sheet]
plugin = "file"
path = "out/members.csv"

[[syncs]]
name = "undeclared-action"
destination = "hook"
segments = ["live"]
on_enter = { action = "add_to_list" }

[[syncs]]
name = "exit-action-on-enter"
destination = "sheet"
segments = ["live"]
on_enter = { action = "remove" }
on_exit = { action = "remove" }

[[syncs]]
name = "unknown-destination"
destination = "crm"
segments = ["live"]
on_enter = { action = "send" }
"""


def test_validate_reports_every_bad_sync_with_its_key_path(
    cli: Cli, tmp_path: Path
) -> None:
    write_contacts(tmp_path, people(1))
    recipe = HEAD.format(segment="") + BAD_SYNCS
    (tmp_path / "recipe.toml").write_text(recipe, encoding="utf-8")

    checked = cli("validate", "recipe.toml")

    assert checked.code == 1
    assert "is invalid (3 problems)" in checked.stderr
    assert (
        "syncs[0].on_enter.action: The 'webhook' destination has no action "
        "'add_to_list'; its actions: send."
    ) in checked.stderr
    assert (
        "syncs[1].on_enter.action: The action 'remove' cannot be used on enter; "
        "it is for exit."
    ) in checked.stderr
    assert (
        "syncs[2].destination: No enabled destination is named 'crm'; "
        "destinations: 'hook', 'sheet'."
    ) in checked.stderr
