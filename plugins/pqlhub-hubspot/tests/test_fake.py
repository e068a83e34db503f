"""The fake HubSpot, driven over real HTTP on loopback as a client would drive it.

Every fake a test starts is checked against HubSpot's OpenAPI files; the fixture
fails the test if any exchange broke them, so each test also shows that the fake's
own answers match the spec. Tests that send a malformed request on purpose take
the violation they expect out of the list.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from pqlhub_hubspot.fake import ALL_SCOPES, DEFAULT_TOKEN, FakeHubSpot

from .conftest import MakeFake, checked_fakes

READER = "reader-token"
TOKENS = {
    DEFAULT_TOKEN: ALL_SCOPES,
    READER: {"crm.objects.contacts.read", "crm.lists.read"},
}
UPSERT = "/crm/v3/objects/contacts/batch/upsert"
READ = "/crm/v3/objects/contacts/batch/read"
CREATE = "/crm/v3/objects/contacts/batch/create"
PROPERTIES = "/crm/v3/properties/contacts"
LISTS = "/crm/v3/lists"
TASKS = "/crm/v3/objects/tasks"
SEGMENTS = {
    "name": "pql_segments",
    "label": "PQL segments",
    "type": "enumeration",
    "fieldType": "checkbox",
    "groupName": "contactinformation",
    "options": [
        {"label": "Activated", "value": "activated", "hidden": False},
        {"label": "Qualified", "value": "qualified", "hidden": False},
    ],
}


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_fake(clock: FakeClock) -> Iterator[MakeFake]:
    """Start fakes with the test's clock; after the test, stop them and check
    that no exchange broke HubSpot's OpenAPI files."""
    yield from checked_fakes(tokens=TOKENS, clock=clock)


@pytest.fixture
def fake(make_fake: MakeFake) -> FakeHubSpot:
    return make_fake()


@pytest.fixture
def client(fake: FakeHubSpot) -> Iterator[httpx.Client]:
    with connect(fake) as http:
        yield http


def connect(hub: FakeHubSpot, token: str | None = DEFAULT_TOKEN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # Plain HTTP on loopback: loading the CA bundle would cost 60 ms a client.
    return httpx.Client(base_url=hub.base_url, headers=headers, verify=False)


def upsert_body(contacts: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    inputs = [
        {"id": email, "idProperty": "email", "properties": dict(values)}
        for email, values in contacts.items()
    ]
    return {"inputs": inputs}


def read_body(*ids: str, by_email: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [{"id": record_id} for record_id in ids],
        "properties": ["firstname", "lastname", "email"],
        "propertiesWithHistory": [],
    }
    return {**body, "idProperty": "email"} if by_email else body


def add_contacts(http: httpx.Client, *emails: str) -> list[str]:
    """Upsert contacts by email; return their record ids."""
    response = http.post(UPSERT, json=upsert_body({email: {} for email in emails}))
    assert response.status_code == 200
    return [result["id"] for result in response.json()["results"]]


def new_list(http: httpx.Client, name: str) -> str:
    body = {"name": name, "objectTypeId": "0-1", "processingType": "MANUAL"}
    response = http.post(LISTS, json=body)
    assert response.status_code == 200
    return str(response.json()["list"]["listId"])


def task_input(contact_id: str, **properties: str) -> dict[str, Any]:
    association = {
        "to": {"id": contact_id},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}],
    }
    values = {"hs_timestamp": "1767225600000", **properties}
    return {"properties": values, "associations": [association]}


def search_body(contact_id: str, token: str) -> dict[str, Any]:
    filters = [
        {"propertyName": "associations.contact", "operator": "EQ", "value": contact_id},
        {"propertyName": "hs_task_body", "operator": "CONTAINS_TOKEN", "value": token},
    ]
    return {
        "filterGroups": [{"filters": filters}],
        "properties": ["hs_task_body"],
        "sorts": [],
        "limit": 10,
        "after": "0",
    }


def take_violations(hub: FakeHubSpot) -> list[str]:
    found = list(hub.violations)
    hub.violations.clear()
    return found


# -------------------------------------------------------------------- contacts


def test_upsert_creates_then_updates_contacts(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    first = client.post(
        UPSERT, json=upsert_body({"Ada@Example.com": {"firstname": "Ada"}})
    )
    again = client.post(
        UPSERT, json=upsert_body({"ada@example.com": {"lastname": "L"}})
    )
    read = client.post(READ, json=read_body("ADA@example.com"))

    assert first.status_code == again.status_code == read.status_code == 200
    assert first.json()["results"][0]["new"] is True
    assert again.json()["results"][0]["new"] is False
    record_id = first.json()["results"][0]["id"]
    assert again.json()["results"][0]["id"] == record_id
    assert read.json()["results"][0]["properties"] == {
        "firstname": "Ada",
        "lastname": "L",
        "email": "ada@example.com",
        "hs_object_id": record_id,
        "createdate": fake.contacts[record_id]["createdate"],
        "lastmodifieddate": fake.contacts[record_id]["lastmodifieddate"],
    }
    assert fake.contact_by_email("ADA@EXAMPLE.COM") == fake.contacts[record_id]
    assert len(fake.contacts) == 1


def test_batch_read_reports_missing_ids_in_207(client: httpx.Client) -> None:
    (record_id,) = add_contacts(client, "ada@example.com")

    by_email = client.post(
        READ, json=read_body("ada@example.com", "nobody@example.com")
    )
    by_id = client.post(READ, json=read_body(record_id, "999", by_email=False))

    for response, missing in ((by_email, "nobody@example.com"), (by_id, "999")):
        assert response.status_code == 207
        body = response.json()
        assert [result["id"] for result in body["results"]] == [record_id]
        assert body["numErrors"] == 1
        assert body["errors"][0]["category"] == "OBJECT_NOT_FOUND"
        assert body["errors"][0]["context"] == {"ids": [missing]}


def test_batch_read_without_property_lists_is_a_violation(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    response = client.post(READ, json={"inputs": [{"id": "1"}]})

    assert response.status_code == 207
    (violation,) = take_violations(fake)
    assert violation.startswith(f"POST {READ}: request: ")
    assert "'properties' is a required property" in violation
    assert "'propertiesWithHistory' is a required property" in violation


def test_upsert_rejected_inputs_answer_207(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    fake.reject_inputs(["Bad@example.com"])

    response = client.post(
        UPSERT, json=upsert_body({"bad@example.com": {}, "good@example.com": {}})
    )

    assert response.status_code == 207
    body = response.json()
    assert body["numErrors"] == 1
    (error,) = body["errors"]
    assert error["message"] == "Email address Bad@example.com is invalid"
    assert error["context"] == {"ids": ["bad@example.com"]}
    assert [r["properties"]["email"] for r in body["results"]] == ["good@example.com"]
    assert fake.contact_by_email("bad@example.com") is None


def test_upsert_over_100_inputs_is_400(fake: FakeHubSpot, client: httpx.Client) -> None:
    emails: dict[str, dict[str, str]] = {f"u{n}@example.com": {} for n in range(101)}

    response = client.post(UPSERT, json=upsert_body(emails))

    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"
    assert response.json()["message"] == (
        "The batch has 101 inputs; at most 100 are allowed."
    )
    assert fake.contacts == {}


def test_upsert_unknown_property_fails_the_whole_batch(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    contacts = {"ada@example.com": {}, "bob@example.com": {"favourite_colour": "red"}}

    response = client.post(UPSERT, json=upsert_body(contacts))

    assert response.status_code == 400
    message = response.json()["message"]
    assert message.startswith("Property values were not valid: ")
    assert "PROPERTY_DOESNT_EXIST" in message
    assert fake.contacts == {}


def test_batch_create_conflicts_on_existing_email(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    (ada,) = add_contacts(client, "ada@example.com")
    inputs = [
        {"properties": {"email": email}, "associations": []}
        for email in ("ADA@example.com", "bob@example.com")
    ]

    response = client.post(CREATE, json={"inputs": inputs})

    assert response.status_code == 207
    (error,) = response.json()["errors"]
    assert error["category"] == "CONFLICT"
    assert error["message"] == f"Contact already exists. Existing ID: {ada}"
    assert fake.contact_by_email("bob@example.com") is not None


# ------------------------------------------------------------------ properties


def test_property_create_and_extend_options(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    created = client.post(PROPERTIES, json=SEGMENTS)
    duplicate = client.post(PROPERTIES, json=SEGMENTS)
    options = [*SEGMENTS["options"], {"label": "PQL", "value": "pql", "hidden": False}]
    patched = client.patch(f"{PROPERTIES}/pql_segments", json={"options": options})
    fetched = client.get(f"{PROPERTIES}/pql_segments")

    assert created.status_code == 201
    assert created.headers["Location"] == f"{fake.base_url}{PROPERTIES}/pql_segments"
    assert duplicate.status_code == 409
    assert duplicate.json()["category"] == "CONFLICT"
    assert patched.status_code == fetched.status_code == 200
    values = [option["value"] for option in fetched.json()["options"]]
    assert values == ["activated", "qualified", "pql"]
    assert fake.properties["pql_segments"]["fieldType"] == "checkbox"


def test_property_value_outside_options_is_400(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    client.post(PROPERTIES, json=SEGMENTS)

    wrong = client.post(
        UPSERT, json=upsert_body({"ada@example.com": {"pql_segments": "activated;vip"}})
    )
    right = client.post(
        UPSERT,
        json=upsert_body({"ada@example.com": {"pql_segments": "activated;qualified"}}),
    )

    assert wrong.status_code == 400
    assert "INVALID_OPTION" in wrong.json()["message"]
    assert "vip was not one of the allowed options" in wrong.json()["message"]
    assert right.status_code == 200
    contact = fake.contact_by_email("ada@example.com")
    assert contact is not None
    assert contact["pql_segments"] == "activated;qualified"


def test_property_missing_is_404(client: httpx.Client) -> None:
    response = client.get(f"{PROPERTIES}/pql_segments")

    assert response.status_code == 404
    assert response.json()["category"] == "OBJECT_NOT_FOUND"


# ----------------------------------------------------------------------- lists


def test_list_create_find_and_change_memberships(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    ada, bob = add_contacts(client, "ada@example.com", "bob@example.com")
    list_id = new_list(client, "PQL: Qualified")

    found = client.get(f"{LISTS}/object-type-id/0-1/name/{quote('pql: qualified')}")
    added = client.put(f"{LISTS}/{list_id}/memberships/add", json=[ada, bob, "999"])
    both = fake.list_members("PQL: qualified")
    removed = client.put(f"{LISTS}/{list_id}/memberships/remove", json=[bob])
    fetched = client.get(f"{LISTS}/{list_id}")
    absent = client.get(f"{LISTS}/object-type-id/0-1/name/nothing")

    assert found.json()["list"]["listId"] == list_id
    assert found.json()["list"]["processingType"] == "MANUAL"
    assert added.json() == {
        "recordsIdsAdded": [ada, bob],
        "recordIdsRemoved": [],
        "recordIdsMissing": ["999"],
    }
    assert both == {"ada@example.com", "bob@example.com"}
    assert removed.json()["recordIdsRemoved"] == [bob]
    assert fetched.json()["list"]["size"] == 1
    assert fake.list_members("pql: qualified") == {"ada@example.com"}
    assert absent.status_code == 404


def test_list_memberships_page_with_after(client: httpx.Client) -> None:
    record_ids = add_contacts(client, *(f"user{n}@example.com" for n in range(5)))
    list_id = new_list(client, "Everyone")
    client.put(f"{LISTS}/{list_id}/memberships/add", json=record_ids[::-1])

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    for _ in range(5):
        page = client.get(f"{LISTS}/{list_id}/memberships", params=params).json()
        seen += [result["recordId"] for result in page["results"]]
        if "paging" not in page:
            break
        params["after"] = page["paging"]["next"]["after"]
    too_many = client.get(f"{LISTS}/{list_id}/memberships", params={"limit": 251})

    assert seen == record_ids
    assert page["total"] == 5
    assert too_many.status_code == 400


def test_list_membership_change_over_cap_is_400(make_fake: MakeFake) -> None:
    hub = make_fake(membership_cap=3)
    with connect(hub) as http:
        list_id = new_list(http, "Small")
        response = http.put(
            f"{LISTS}/{list_id}/memberships/add", json=["1", "2", "3", "4"]
        )

    assert response.status_code == 400
    assert "at most 3" in response.json()["message"]


# ----------------------------------------------------------------------- tasks


def test_task_create_associates_contact(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    (ada,) = add_contacts(client, "ada@example.com")

    created = client.post(TASKS, json=task_input(ada, hs_task_subject="Call Ada"))
    undated = task_input(ada)
    del undated["properties"]["hs_timestamp"]
    refused = client.post(TASKS, json=undated)

    assert created.status_code == 201
    assert created.json()["properties"]["hs_task_subject"] == "Call Ada"
    (task,) = fake.tasks
    assert task["id"] == created.json()["id"]
    assert task["contactIds"] == [ada]
    assert refused.status_code == 400
    assert refused.json()["context"] == {"properties": ["hs_timestamp"]}


def test_task_batch_create_reports_missing_contact_in_207(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    (ada,) = add_contacts(client, "ada@example.com")

    response = client.post(
        f"{TASKS}/batch/create", json={"inputs": [task_input(ada), task_input("999")]}
    )

    assert response.status_code == 207
    assert response.json()["errors"][0]["context"] == {"ids": ["999"]}
    assert [task["contactIds"] for task in fake.tasks] == [[ada]]


def test_task_search_finds_task_by_contact_and_token(client: httpx.Client) -> None:
    ada, bob = add_contacts(client, "ada@example.com", "bob@example.com")
    body = "Follow up (pqlhub ref pqlref0123456789abcdef0123)"
    task_id = client.post(TASKS, json=task_input(ada, hs_task_body=body)).json()["id"]

    hit = client.post(
        f"{TASKS}/search", json=search_body(ada, "pqlref0123456789abcdef0123")
    )
    miss = client.post(
        f"{TASKS}/search", json=search_body(bob, "pqlref0123456789abcdef0123")
    )

    assert hit.status_code == 200
    assert hit.json()["total"] == 1
    assert hit.json()["results"][0]["id"] == task_id
    assert hit.json()["results"][0]["properties"]["hs_task_body"] == body
    assert miss.json() == {"total": 0, "results": []}
    assert "X-HubSpot-RateLimit-Remaining" not in hit.headers


def test_task_batch_upsert_makes_one_task_per_unique_value(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    item = {
        "id": "pqlref-1",
        "idProperty": "pql_reference",
        "properties": {"hs_timestamp": "1767225600000", "hs_task_subject": "Call"},
    }

    first = client.post(f"{TASKS}/batch/upsert", json={"inputs": [item]})
    second = client.post(f"{TASKS}/batch/upsert", json={"inputs": [item]})

    assert first.json()["results"][0]["new"] is True
    assert second.json()["results"][0]["new"] is False
    (task,) = fake.tasks
    assert task["properties"]["pql_reference"] == "pqlref-1"


# ------------------------------------------------------------- auth and scopes


def test_auth_missing_token_is_401(fake: FakeHubSpot) -> None:
    with connect(fake, token=None) as http:
        response = http.post(READ, json=read_body("ada@example.com"))

    assert response.status_code == 401
    assert response.json()["category"] == "INVALID_AUTHENTICATION"
    (violation,) = take_violations(fake)
    assert "request: SecurityValidationError" in violation


def test_auth_expired_token_is_401(fake: FakeHubSpot, client: httpx.Client) -> None:
    before = client.post(READ, json=read_body("ada@example.com"))
    fake.expire_token(DEFAULT_TOKEN)
    after = client.post(READ, json=read_body("ada@example.com"))

    assert before.status_code == 207
    assert after.status_code == 401
    assert after.json()["category"] == "INVALID_AUTHENTICATION"
    assert "expired" in after.json()["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "scope"),
    [
        pytest.param(
            "POST", UPSERT, upsert_body({}), "crm.objects.contacts.write", id="upsert"
        ),
        pytest.param(
            "PUT", f"{LISTS}/1/memberships/add", [], "crm.lists.write", id="members"
        ),
        pytest.param(
            "POST", PROPERTIES, SEGMENTS, "crm.schemas.contacts.write", id="property"
        ),
    ],
)
def test_scope_missing_is_403_naming_it(
    fake: FakeHubSpot, method: str, path: str, body: Any, scope: str
) -> None:
    with connect(fake, token=READER) as http:
        response = http.request(method, path, json=body)

    assert response.status_code == 403
    assert response.json()["category"] == "MISSING_SCOPES"
    assert scope in response.json()["message"]
    assert response.json()["context"] == {"requiredScopes": [scope]}


# ---------------------------------------------------------------- rate limits


def test_rate_limit_rolling_window_429_then_recovers(
    make_fake: MakeFake, clock: FakeClock
) -> None:
    hub = make_fake(rate_limit=3)
    with connect(hub) as http:
        allowed = [http.post(READ, json=read_body("a@example.com")) for _ in range(3)]
        refused = http.post(READ, json=read_body("a@example.com"))
        clock.advance(10.001)
        recovered = http.post(READ, json=read_body("a@example.com"))

    assert [r.headers["X-HubSpot-RateLimit-Remaining"] for r in allowed] == [
        "2",
        "1",
        "0",
    ]
    assert refused.status_code == 429
    body = refused.json()
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert body["errorType"] == "RATE_LIMIT"
    assert body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert {"correlationId", "requestId"} <= set(body)
    assert refused.headers["X-HubSpot-RateLimit-Max"] == "3"
    assert refused.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert refused.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert recovered.status_code == 207
    assert hub.throttled == 1


def test_rate_limit_daily_429_names_daily_policy(
    make_fake: MakeFake, clock: FakeClock
) -> None:
    hub = make_fake(daily_limit=2)
    with connect(hub) as http:
        for _ in range(2):
            http.post(READ, json=read_body("a@example.com"))
        refused = http.post(READ, json=read_body("a@example.com"))
        clock.advance(86_400)
        next_day = http.post(READ, json=read_body("a@example.com"))

    assert refused.status_code == 429
    assert refused.json()["policyName"] == "DAILY"
    assert refused.json()["message"] == "You have reached your daily limit."
    assert refused.headers["X-HubSpot-RateLimit-Daily"] == "2"
    assert refused.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    assert next_day.status_code == 207


def test_rate_limit_next_sends_retry_after(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    fake.rate_limit_next(retry_after=2)

    refused = client.post(READ, json=read_body("a@example.com"))
    allowed = client.post(READ, json=read_body("a@example.com"))

    assert refused.status_code == 429
    assert refused.json()["policyName"] == "TEN_SECONDLY_ROLLING"
    assert refused.headers["Retry-After"] == "2"
    assert allowed.status_code == 207
    assert fake.throttled == 1


# ---------------------------------------------------------------------- faults


def test_fail_next_answers_the_status_then_recovers(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    fake.fail_next(2, status=503)

    statuses = [client.post(READ, json=read_body("a@example.com")) for _ in range(3)]

    assert [r.status_code for r in statuses] == [503, 503, 207]
    assert statuses[0].json()["category"] == "INTERNAL_ERROR"
    assert "X-HubSpot-RateLimit-Remaining" in statuses[0].headers


def test_slow_down_delays_each_answer(fake: FakeHubSpot, client: httpx.Client) -> None:
    fake.slow_down(0.2)

    started = time.perf_counter()
    client.post(READ, json=read_body("a@example.com"))

    assert time.perf_counter() - started >= 0.2


def test_requests_are_recorded(
    fake: FakeHubSpot, client: httpx.Client, clock: FakeClock
) -> None:
    client.post(READ, json=read_body("a@example.com"), params={"archived": "false"})

    (recorded,) = fake.requests
    assert (recorded.method, recorded.path, recorded.status) == ("POST", READ, 207)
    assert recorded.query == {"archived": ["false"]}
    assert recorded.json == read_body("a@example.com")
    assert recorded.time == clock.now


def test_unknown_path_is_404_and_a_violation(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    response = client.get("/crm/v3/objects/unicorns")

    assert response.status_code == 404
    (violation,) = take_violations(fake)
    assert "no operation in the OpenAPI files" in violation


def test_fake_without_specs_serves_unchecked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("PQLHUB_HUBSPOT_SPECS", raising=False)
    monkeypatch.setattr("pqlhub_hubspot.fake.find_specs_dir", lambda: None)

    with FakeHubSpot() as hub, connect(hub) as http:
        response = http.post(READ, json={"inputs": []})

    assert not hub.validating
    assert response.status_code == 200
    assert "serves without checking its traffic" in caplog.text


def test_specs_dir_without_files_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="No OpenAPI file"):
        FakeHubSpot(specs_dir=tmp_path)


# ---------------------------------------------------------------------- admin


def test_admin_endpoints_inject_faults_and_show_state(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    (ada,) = add_contacts(client, "ada@example.com")
    list_id = new_list(client, "PQL")
    client.put(f"{LISTS}/{list_id}/memberships/add", json=[ada])

    injected = client.post("/__fake/faults", json={"kind": "fail", "status": 502})
    failed = client.post(READ, json=read_body("ada@example.com"))
    unknown = client.post("/__fake/faults", json={"kind": "meteor"})
    state = client.get("/__fake/state").json()

    assert injected.json() == {"applied": "fail"}
    assert failed.status_code == 502
    assert unknown.status_code == 400
    assert state["contacts"][ada]["email"] == "ada@example.com"
    assert state["lists"][list_id]["members"] == ["ada@example.com"]
    assert state["requests"] == 4
    assert state["throttled"] == 0
    assert state["violations"] == []


def test_cli_serves_until_interrupted() -> None:
    command = [sys.executable, "-m", "pqlhub_hubspot.fake", "--token", "cli-token"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        headers = {"Authorization": "Bearer cli-token"}
        with httpx.Client(base_url=base_url, headers=headers, verify=False) as http:
            http.post("/__fake/faults", json={"kind": "fail", "count": 1})
            failed = http.post(UPSERT, json=upsert_body({"ada@example.com": {}}))
            done = http.post(UPSERT, json=upsert_body({"ada@example.com": {}}))
            state = http.get("/__fake/state").json()
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)

    assert base_url.startswith("http://127.0.0.1:")
    assert (failed.status_code, done.status_code) == (500, 200)
    assert [c["email"] for c in state["contacts"].values()] == ["ada@example.com"]
    assert state["violations"] == []
    assert process.returncode == 0
