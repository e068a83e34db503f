"""Profiles: contacts joined to accounts, and traits folded from events.

Most tests write small CSV and JSON-lines files and evaluate a recipe over them
through the real csv and segment-files sources; window edges are checked on
`fold_events` directly, where the moments read best.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import pqlhub_analytics
import pqlhub_csv
from pqlhub import RecipeInvalidError
from pqlhub.engine import Evaluation, evaluate
from pqlhub.plugins import Plugins
from pqlhub.profiles import Identity, ProfileTable, TableBuilder, TraitSpec, fold_events
from pqlhub.recipe import recipe_from_dict

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)

CONTACTS = [
    {"id": "u1", "email": "ann@acme.com", "company_domain": "acme.com", "plan": "pro"},
    {"id": "u2", "email": "bob@gmail.com", "company_domain": "ACME.com", "plan": ""},
    {"id": "u3", "email": "cy@gmail.com", "company_domain": "", "plan": "free"},
]
ACCOUNTS = [{"domain": "acme.com", "industry": "Software"}]


def _ago(days: float = 0, seconds: float = 0) -> str:
    return (AS_OF - timedelta(days=days, seconds=seconds)).isoformat()


def _track(user: str, event: str, when: str, **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": user,
        "event": event,
        "timestamp": when,
        "properties": properties,
    }


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    header = list(dict.fromkeys(name for row in rows for name in row))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, header)
        writer.writeheader()
        writer.writerows(rows)


def _evaluate(
    folder: Path,
    events: Sequence[Mapping[str, Any]] = (),
    traits: Mapping[str, Any] | None = None,
    contacts: Sequence[Mapping[str, Any]] = CONTACTS,
    accounts: Sequence[Mapping[str, Any]] = ACCOUNTS,
    more_sources: Mapping[str, Any] | None = None,
    **sections: Any,
) -> Evaluation:
    """Write the records to files in `folder` and evaluate a recipe over them."""
    _write_csv(folder / "contacts.csv", contacts)
    _write_csv(folder / "accounts.csv", accounts)
    lines = "".join(json.dumps(event) + "\n" for event in events)
    (folder / "events.jsonl").write_text(lines, encoding="utf-8")
    recipe = {
        "recipe": {"name": "profiles"},
        "sources": {
            "accounts": {
                "plugin": "csv",
                "entity": "account",
                "key": "domain",
                "path": "accounts.csv",
            },
            "users": {
                "plugin": "csv",
                "entity": "contact",
                "key": "id",
                "path": "contacts.csv",
            },
            "product": {
                "plugin": "segment-files",
                "entity": "event",
                "path": "events.jsonl",
            },
            **(more_sources or {}),
        },
        "identity": {"account": "company_domain"},
        "traits": traits or {},
        **sections,
    }
    plugins = Plugins.of(pqlhub_csv, pqlhub_analytics)
    loaded = recipe_from_dict(recipe, plugins=plugins, base_dir=folder)
    return evaluate(loaded, as_of=AS_OF)


def _value(evaluation: Evaluation, key: str, field: str) -> Any:
    profile = evaluation.table.profile(key)
    assert profile is not None, key
    return profile[field]


# ------------------------------------------------------------------------ joining


def _reading(*fields: str) -> dict[str, Any]:
    """A segment whose rule reads `fields`, so that the profiles keep them."""
    where = " or ".join(f"{name} is not null" for name in fields)
    return {"reads": {"name": "Reads", "where": where, "min_size": 0}}


def test_join_uses_the_identity_account_field_in_any_case(tmp_path: Path) -> None:
    evaluation = _evaluate(tmp_path, segments=_reading("account.industry"))

    assert _value(evaluation, "u1", "account.industry") == "Software"
    assert _value(evaluation, "u2", "account.industry") == "Software"
    assert _value(evaluation, "u3", "account.industry") is None


def test_join_falls_back_to_the_email_domain_when_the_field_is_empty(
    tmp_path: Path,
) -> None:
    contacts = [{"id": "u1", "email": "Ann@Acme.com", "company_domain": ""}]

    evaluation = _evaluate(
        tmp_path, contacts=contacts, segments=_reading("account.industry")
    )

    assert _value(evaluation, "u1", "account.industry") == "Software"


@pytest.mark.parametrize(
    ("email", "identity"),
    [
        pytest.param("cy@gmail.com", {}, id="gmail"),
        pytest.param("cy@outlook.com", {}, id="outlook"),
        pytest.param("cy@HOTMAIL.com", {}, id="hotmail-upper-case"),
        pytest.param(
            "cy@mailbox.org", {"free_mail_domains": ["Mailbox.org"]}, id="recipe-extra"
        ),
        pytest.param("cy@acme.com", {"account_from_email": False}, id="fallback-off"),
    ],
)
def test_join_never_takes_a_free_mail_domain_as_account(
    tmp_path: Path, email: str, identity: dict[str, Any]
) -> None:
    # Two strangers at one mailbox provider: an account would group them.
    contacts = [
        {"id": "u3", "email": email, "company_domain": ""},
        {"id": "u5", "email": f"x{email}", "company_domain": ""},
    ]
    events = [_track("u3", "login", _ago(days=1)), _track("u5", "login", _ago())]
    traits = {"users": {"agg": "count_distinct", "of": "userId", "per": "account"}}

    evaluation = _evaluate(
        tmp_path,
        events,
        traits,
        contacts=contacts,
        identity={"account": "company_domain", **identity},
    )

    assert _value(evaluation, "u3", "account.users") is None
    assert _value(evaluation, "u5", "account.users") is None


def test_join_never_takes_a_free_mail_account_field_as_account(
    tmp_path: Path,
) -> None:
    # A CRM export that filled the company column from the email's domain.
    contacts = [
        {"id": "u3", "email": "cy@gmail.com", "company_domain": "gmail.com"},
        {"id": "u5", "email": "dee@gmail.com", "company_domain": "Gmail.com"},
    ]
    events = [_track("u3", "login", _ago(days=1)), _track("u5", "login", _ago())]
    traits = {"users": {"agg": "count_distinct", "of": "userId", "per": "account"}}

    evaluation = _evaluate(tmp_path, events, traits, contacts=contacts)

    assert _value(evaluation, "u3", "account.users") is None
    assert _value(evaluation, "u5", "account.users") is None


def test_sync_field_that_no_profile_has_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sections = {
        "segments": {"everyone": {"name": "Everyone", "min_size": 0}},
        "destinations": {"sheet": {"plugin": "file", "path": "out.csv"}},
        "syncs": [
            {
                "name": "to-sheet",
                "destination": "sheet",
                "segments": ["everyone"],
                "on_enter": {"action": "add"},
                "fields": {"company": "account.nmae"},
            }
        ],
    }

    with caplog.at_level(logging.WARNING, logger="pqlhub"):
        _evaluate(tmp_path, **sections)

    assert (
        "Sync 'to-sheet' sends 'company' from 'account.nmae', which no profile has"
        in (caplog.text)
    )


def test_join_takes_a_company_domain_from_the_email(tmp_path: Path) -> None:
    contacts = [
        {"id": "u3", "email": "a@newco.dev", "company_domain": ""},
        {"id": "u5", "email": "b@NewCo.dev", "company_domain": ""},
    ]
    events = [_track("u3", "login", _ago(days=1)), _track("u5", "login", _ago())]
    traits = {"users": {"agg": "count_distinct", "of": "userId", "per": "account"}}

    evaluation = _evaluate(tmp_path, events, traits, contacts=contacts)

    assert _value(evaluation, "u3", "account.users") == 2


def test_join_groups_contacts_of_an_account_no_source_lists(tmp_path: Path) -> None:
    contacts = [
        {"id": "u1", "email": "a@ghost.io", "company_domain": ""},
        {"id": "u2", "email": "b@elsewhere.com", "company_domain": "ghost.io"},
    ]
    events = [
        _track("u1", "api_call", _ago(days=1)),
        _track("u2", "api_call", _ago(days=2)),
    ]
    traits = {
        "api_calls": {"event": "api_call", "agg": "count", "per": "account"},
        "users": {"agg": "count_distinct", "of": "userId", "per": "account"},
    }

    evaluation = _evaluate(
        tmp_path, events, traits, contacts, segments=_reading("account.industry")
    )

    for key in ("u1", "u2"):
        assert _value(evaluation, key, "account.api_calls") == 2
        assert _value(evaluation, key, "account.users") == 2
        assert _value(evaluation, key, "account.industry") is None


# ------------------------------------------------------------------------- traits

# u1 and u2 are acme.com's contacts; u3 has no account and no events.
EVENTS = [
    _track("u1", "seats_changed", _ago(days=10), seats=3, plan="pro"),
    _track("u1", "seats_changed", _ago(days=2), seats=5, plan="team"),
    _track("u2", "seats_changed", _ago(days=5), seats=1, plan="pro"),
    _track("u2", "seats_changed", _ago(days=4), seats="many", plan=None),
    _track("u1", "login", _ago(days=1)),
]
FIRST, LAST = AS_OF - timedelta(days=10), AS_OF - timedelta(days=2)

# fmt: off
AGGREGATIONS = [
    # agg, of, u1's value, acme.com's value, the value of no events
    pytest.param("count", None, 2, 4, 0, id="count"),
    pytest.param("exists", None, True, True, False, id="exists"),
    pytest.param("first", None, FIRST, FIRST, None, id="first"),
    pytest.param("last", None, LAST, LAST, None, id="last"),
    pytest.param("first", "timestamp", FIRST, FIRST, None, id="first-of-timestamp"),
    pytest.param("sum", "properties.seats", 8, 9, 0, id="sum"),
    pytest.param("min", "properties.seats", 3, 1, None, id="min"),
    pytest.param("max", "properties.seats", 5, 5, None, id="max"),
    pytest.param("distinct", "properties.plan", ["pro", "team"], ["pro", "team"],
                 [], id="distinct"),
    pytest.param("count_distinct", "properties.plan", 2, 2, 0, id="count_distinct"),
    pytest.param("count_distinct", "userId", 1, 2, 0, id="count_distinct-userId"),
]
# fmt: on


@pytest.mark.parametrize(("agg", "of", "contact", "account", "empty"), AGGREGATIONS)
def test_trait_aggregates_per_contact_and_per_account(
    tmp_path: Path, agg: str, of: str | None, contact: Any, account: Any, empty: Any
) -> None:
    mine = {"event": "seats_changed", "agg": agg, **({"of": of} if of else {})}
    traits = {"mine": mine, "team": {**mine, "per": "account"}}
    accounts = [*ACCOUNTS, {"domain": "quiet.io", "industry": "Retail"}]
    contacts = [*CONTACTS, {"id": "u4", "email": "d@quiet.io", "company_domain": ""}]

    evaluation = _evaluate(tmp_path, EVENTS, traits, contacts, accounts)

    assert _value(evaluation, "u1", "mine") == contact
    assert _value(evaluation, "u3", "mine") == empty
    assert _value(evaluation, "u1", "account.team") == account
    assert _value(evaluation, "u2", "account.team") == account
    assert _value(evaluation, "u4", "account.team") == empty
    assert _value(evaluation, "u3", "account.team") is None


def test_trait_without_event_counts_every_track_call(tmp_path: Path) -> None:
    traits = {"calls": {"agg": "count"}, "seen": {"agg": "last"}}

    evaluation = _evaluate(tmp_path, EVENTS, traits)

    assert _value(evaluation, "u1", "calls") == 3
    assert _value(evaluation, "u1", "seen") == AS_OF - timedelta(days=1)


def test_trait_needing_of_without_it_is_refused_with_its_key_path(
    tmp_path: Path,
) -> None:
    with pytest.raises(
        RecipeInvalidError, match=r"traits\.seats\.of: A 'sum' trait needs"
    ):
        _evaluate(tmp_path, EVENTS, {"seats": {"agg": "sum"}})


# ------------------------------------------------------------------------ windows


def _one_contact() -> ProfileTable:
    builder = TableBuilder(Identity(), frozenset(), frozenset())
    builder.add_contacts([{"id": "u1"}], "id")
    return builder.finish()


@pytest.mark.parametrize(
    ("moment", "counted"),
    [
        pytest.param(AS_OF - timedelta(days=30), 1, id="exactly-at-window-start"),
        pytest.param(AS_OF - timedelta(days=30, seconds=1), 0, id="a-second-earlier"),
        pytest.param(AS_OF, 1, id="exactly-at-as-of"),
        pytest.param(AS_OF + timedelta(seconds=1), 0, id="a-second-after-as-of"),
    ],
)
def test_trait_within_window_includes_both_edges(
    moment: datetime, counted: int
) -> None:
    table = _one_contact()
    event = {"type": "track", "userId": "u1", "event": "login", "timestamp": moment}
    spec = TraitSpec("logins", "count", event="login", within=timedelta(days=30))

    fold_events(table, [event], [spec], AS_OF)

    assert table.columns["logins"] == [counted]


def test_trait_within_window_through_a_recipe(tmp_path: Path) -> None:
    events = [
        _track("u1", "login", _ago(days=30)),
        _track("u1", "login", _ago(days=30, seconds=1)),
        _track("u1", "login", _ago(days=29)),
    ]
    traits = {
        "recent": {"event": "login", "agg": "count", "within": "30d"},
        "recent_users": {
            "agg": "count_distinct",
            "of": "userId",
            "per": "account",
            "within": "720h",
        },
        "ever": {"event": "login", "agg": "count"},
    }

    evaluation = _evaluate(tmp_path, events, traits)

    assert _value(evaluation, "u1", "recent") == 2
    assert _value(evaluation, "u1", "account.recent_users") == 1
    assert _value(evaluation, "u1", "ever") == 3


def test_events_after_as_of_are_ignored_and_reported(tmp_path: Path) -> None:
    events = [
        _track("u1", "login", _ago(days=1)),
        _track("u1", "login", _ago(seconds=-1)),
        _track("u1", "login", _ago(days=-3)),
    ]

    evaluation = _evaluate(tmp_path, events, {"logins": {"agg": "count"}})

    assert _value(evaluation, "u1", "logins") == 1
    assert evaluation.events.after_as_of == 2
    assert evaluation.events.folded == 1


# --------------------------------------------------------- identify, group, users


def _identify(user: str, when: str, **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": user, "timestamp": when, "traits": traits}


def _group(user: str, group: str, when: str, **traits: Any) -> dict[str, Any]:
    return {
        "type": "group",
        "userId": user,
        "groupId": group,
        "timestamp": when,
        "traits": traits,
    }


def test_identify_updates_contact_fields_in_arrival_order(tmp_path: Path) -> None:
    events = [
        _identify("u1", _ago(days=3), plan="trial"),
        _identify("u1", _ago(days=2), plan="team", unused="x"),
        _identify("u2", _ago(days=2), plan="free"),
        _identify("u3", _ago(days=2), plan=None),
        _identify("u3", _ago(days=-1), plan="enterprise"),
        _identify("nobody", _ago(days=2), plan="pro"),
    ]

    evaluation = _evaluate(tmp_path, events, segments=_reading("plan"))

    assert _value(evaluation, "u1", "plan") == "team"
    assert _value(evaluation, "u2", "plan") == "free"
    assert _value(evaluation, "u3", "plan") == "free"
    assert len(evaluation.table) == 3
    assert evaluation.members("Reads") == ("u1", "u2", "u3")


def test_group_updates_account_fields(tmp_path: Path) -> None:
    contacts = [*CONTACTS, {"id": "u6", "email": "f@ghost.io", "company_domain": ""}]
    events = [
        _group("u1", "ACME.com", _ago(days=2), industry="Fintech", employees=40),
        _group("u6", "ghost.io", _ago(days=2), industry="Mining"),
        _group("u1", "gmail.com", _ago(days=2), industry="Mail"),
        _group("u1", "acme.com", _ago(days=-1), industry="Later"),
    ]

    evaluation = _evaluate(
        tmp_path, events, contacts=contacts, segments=_reading("account.industry")
    )

    assert _value(evaluation, "u2", "account.industry") == "Fintech"
    assert _value(evaluation, "u6", "account.industry") == "Mining"
    assert _value(evaluation, "u3", "account.industry") is None
    assert evaluation.members("Reads") == ("u1", "u2", "u6")


def test_track_of_unknown_user_is_counted_and_not_folded(tmp_path: Path) -> None:
    events = [
        _track("u1", "login", _ago(days=1)),
        _track("stranger", "login", _ago(days=1)),
        _track("stranger", "login", _ago(days=2)),
    ]
    traits = {
        "logins": {"event": "login", "agg": "count"},
        "users": {"agg": "count_distinct", "of": "userId", "per": "account"},
    }

    evaluation = _evaluate(tmp_path, events, traits)

    assert evaluation.events.unknown_user == 2
    assert evaluation.events.folded == 1
    assert _value(evaluation, "u1", "logins") == 1
    assert _value(evaluation, "u1", "account.users") == 1


def test_identity_user_names_the_field_events_refer_to(tmp_path: Path) -> None:
    contacts = [
        {"id": "c1", "user_id": "app-17", "email": "a@acme.com", "company_domain": ""}
    ]
    events = [_track("app-17", "login", _ago(days=1)), _track("c1", "login", _ago())]

    evaluation = _evaluate(
        tmp_path,
        events,
        {"logins": {"event": "login", "agg": "count"}},
        contacts,
        identity={"user": "user_id"},
    )

    assert _value(evaluation, "c1", "logins") == 1
    assert evaluation.events.unknown_user == 1


def test_traits_fold_the_events_of_every_event_source(tmp_path: Path) -> None:
    (tmp_path / "more.jsonl").write_text(
        json.dumps(_track("u1", "login", _ago(days=2))) + "\n", encoding="utf-8"
    )
    more = {"plugin": "segment-files", "entity": "event", "path": "more.jsonl"}
    events = [_track("u1", "login", _ago(days=1)), _track("u2", "login", _ago())]
    traits = {
        "logins": {"event": "login", "agg": "count"},
        "team_logins": {"event": "login", "agg": "count", "per": "account"},
    }

    evaluation = _evaluate(tmp_path, events, traits, more_sources={"more": more})

    assert _value(evaluation, "u1", "logins") == 2
    assert _value(evaluation, "u1", "account.team_logins") == 3
    assert evaluation.events.folded == 3


def test_last_of_a_property_reads_iso_times(tmp_path: Path) -> None:
    events = [
        _track("u1", "renewed", _ago(days=3), renews_on="2027-01-31"),
        _track("u1", "renewed", _ago(days=1), renews_on="2027-03-31T12:00:00Z"),
        _track("u1", "renewed", _ago(days=2), renews_on="not a date"),
    ]
    traits = {
        "renews": {"event": "renewed", "agg": "last", "of": "properties.renews_on"}
    }

    evaluation = _evaluate(tmp_path, events, traits)

    assert _value(evaluation, "u1", "renews") == datetime(2027, 3, 31, 12, tzinfo=UTC)
    assert _value(evaluation, "u2", "renews") is None
