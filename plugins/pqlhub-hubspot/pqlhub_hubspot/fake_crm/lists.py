"""Lists v3: create, fetch by id or name, change and read memberships.

The fake keeps contact lists (`objectTypeId` `0-1`) processed `MANUAL` or
`SNAPSHOT`; it evaluates no filters, so it refuses `DYNAMIC` lists. Membership
changes ignore records already in the state asked for and report the record ids
no contact has as missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from pqlhub_hubspot.fake_crm.api import (
    BODY,
    Call,
    JsonObject,
    Reply,
    bad_request,
    cursor,
    int_arg,
    not_found,
    now_iso,
    object_of,
    text_of,
    unique,
)
from pqlhub_hubspot.fake_crm.store import Crm

CONTACT_OBJECT_TYPE = "0-1"
PROCESSING_TYPES = ("MANUAL", "SNAPSHOT")
MAX_PAGE = 250
OWN_KEYS = ("members", "joinedAt")


def create_list(crm: Crm, call: Call) -> Reply:
    """`POST /crm/v3/lists`: answers 200 (not 201) with `{"list": ...}`."""
    body = object_of(call.json(), BODY)
    name, object_type, processing = (
        text_of(body, key, BODY) for key in ("name", "objectTypeId", "processingType")
    )
    _check_new(crm, name, object_type, processing)
    list_id = crm.new_list_id()
    stamp = now_iso()
    crm.lists[list_id] = {
        "listId": list_id,
        "name": name,
        "objectTypeId": object_type,
        "processingType": processing,
        "processingStatus": "COMPLETE",
        "listVersion": 1,
        "createdAt": stamp,
        "updatedAt": stamp,
        "filtersUpdatedAt": stamp,
        "members": set(),
        "joinedAt": {},
    }
    return Reply(HTTPStatus.OK, {"list": list_object(crm.lists[list_id])})


def get_list(crm: Crm, call: Call) -> Reply:
    """`GET /crm/v3/lists/{listId}`."""
    return Reply(HTTPStatus.OK, {"list": list_object(_stored(crm, call))})


def get_list_by_name(crm: Crm, call: Call) -> Reply:
    """`GET /crm/v3/lists/object-type-id/{objectTypeId}/name/{listName}`."""
    name, object_type = call.params["listName"], call.params["objectTypeId"]
    lst = crm.list_by_name(name)
    if lst is None or lst["objectTypeId"] != object_type:
        message = (
            f"List does not exist with name {name} and objectTypeId {object_type}."
        )
        raise not_found(message)
    return Reply(HTTPStatus.OK, {"list": list_object(lst)})


def add_members(crm: Crm, call: Call) -> Reply:
    """`PUT /crm/v3/lists/{listId}/memberships/add`: a bare array of record ids."""
    lst = _editable(crm, call)
    added, missing = _add(crm, lst, _record_ids(crm, call.json(), BODY))
    return _changed(added, [], missing)


def remove_members(crm: Crm, call: Call) -> Reply:
    """`PUT /crm/v3/lists/{listId}/memberships/remove`: a bare array too."""
    lst = _editable(crm, call)
    removed, missing = _remove(crm, lst, _record_ids(crm, call.json(), BODY))
    return _changed([], removed, missing)


def add_and_remove_members(crm: Crm, call: Call) -> Reply:
    """`PUT /crm/v3/lists/{listId}/memberships/add-and-remove`."""
    lst = _editable(crm, call)
    body = object_of(call.json(), BODY)
    to_add = _record_ids(crm, body.get("recordIdsToAdd"), "recordIdsToAdd")
    to_remove = _record_ids(crm, body.get("recordIdsToRemove"), "recordIdsToRemove")
    added, missing = _add(crm, lst, to_add)
    removed, also_missing = _remove(crm, lst, to_remove)
    return _changed(added, removed, unique([*missing, *also_missing]))


def get_members(crm: Crm, call: Call) -> Reply:
    """`GET /crm/v3/lists/{listId}/memberships`: by record id, pages of up to 250."""
    lst = _stored(crm, call)
    limit = int_arg(call, "limit", 100)
    if not 1 <= limit <= MAX_PAGE:
        raise bad_request(f"limit must be from 1 to {MAX_PAGE}, not {limit}.")
    ordered = sorted(lst["members"], key=int)
    after, before = call.arg("after"), call.arg("before")
    backwards = after is None and before is not None
    if after is not None:
        start = cursor(after, "after")
        candidates = [m for m in ordered if int(m) > start]
    elif before is not None:
        end = cursor(before, "before")
        candidates = [m for m in reversed(ordered) if int(m) < end]
    else:
        candidates = ordered
    page = candidates[:limit]
    joined = lst["joinedAt"]
    body: JsonObject = {
        "results": [{"recordId": m, "membershipTimestamp": joined[m]} for m in page],
        "total": len(ordered),
    }
    if len(candidates) > limit:
        body["paging"] = _paging(call, page[-1], limit, backwards)
    return Reply(HTTPStatus.OK, body)


def list_object(lst: Mapping[str, Any]) -> JsonObject:
    """Return a list as a `PublicObjectList`, without the fake's own keys."""
    shown = {key: value for key, value in lst.items() if key not in OWN_KEYS}
    return {**shown, "size": len(lst["members"])}


def _check_new(crm: Crm, name: str, object_type: str, processing: str) -> None:
    if object_type != CONTACT_OBJECT_TYPE:
        message = f"The fake HubSpot keeps contact lists (0-1) only, not {object_type}."
        raise bad_request(message)
    if processing not in PROCESSING_TYPES:
        raise bad_request(
            f"The fake HubSpot keeps MANUAL and SNAPSHOT lists only, not {processing}: "
            "it does not evaluate list filters."
        )
    if crm.list_by_name(name) is not None:
        # HubSpot refuses a second list of a name; status and wording are guesses.
        raise bad_request(f"A list named {name} already exists; list names are unique.")


def _stored(crm: Crm, call: Call) -> JsonObject:
    list_id = call.params["listId"]
    lst = crm.lists.get(list_id)
    if lst is None:
        raise not_found(f"List {list_id} does not exist.")
    return lst


def _editable(crm: Crm, call: Call) -> JsonObject:
    lst = _stored(crm, call)
    if lst["processingType"] not in PROCESSING_TYPES:
        raise bad_request(
            f"List {lst['listId']} is processed {lst['processingType']}; only MANUAL "
            "and SNAPSHOT lists take membership changes."
        )
    return lst


def _record_ids(crm: Crm, raw: Any, where: str) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(i, str | int) for i in raw):
        raise bad_request(f"{where} must be an array of record ids.")
    if len(raw) > crm.membership_cap:
        raise bad_request(
            f"{where} names {len(raw)} records; one membership change may name "
            f"at most {crm.membership_cap}."
        )
    return unique(str(i) for i in raw)


def _add(
    crm: Crm, lst: JsonObject, record_ids: Sequence[str]
) -> tuple[list[str], list[str]]:
    members: set[str] = lst["members"]
    missing = [rid for rid in record_ids if rid not in crm.contacts]
    added = [rid for rid in record_ids if rid in crm.contacts and rid not in members]
    stamp = now_iso()
    for rid in added:
        members.add(rid)
        lst["joinedAt"][rid] = stamp
    if added:
        lst["updatedAt"] = stamp
    return added, missing


def _remove(
    crm: Crm, lst: JsonObject, record_ids: Sequence[str]
) -> tuple[list[str], list[str]]:
    members: set[str] = lst["members"]
    missing = [rid for rid in record_ids if rid not in crm.contacts]
    removed = [rid for rid in record_ids if rid in members]
    for rid in removed:
        members.discard(rid)
        lst["joinedAt"].pop(rid, None)
    if removed:
        lst["updatedAt"] = now_iso()
    return removed, missing


def _changed(added: list[str], removed: list[str], missing: list[str]) -> Reply:
    # "recordsIdsAdded", with its extra "s", is HubSpot's own spelling.
    body = {
        "recordsIdsAdded": added,
        "recordIdsRemoved": removed,
        "recordIdsMissing": missing,
    }
    return Reply(HTTPStatus.OK, body)


def _paging(call: Call, last: str, limit: int, backwards: bool) -> JsonObject:
    key = "before" if backwards else "after"
    link = f"{call.base_url}{call.path}?{key}={last}&limit={limit}"
    if backwards:
        return {"prev": {"before": last, "link": link}}
    return {"next": {"after": last, "link": link}}
