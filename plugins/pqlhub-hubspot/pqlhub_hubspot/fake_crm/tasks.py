"""Tasks: create one or a batch, upsert by a unique property, and search.

Tasks are checked only for the required `hs_timestamp` (epoch milliseconds or ISO
8601) and the choices of `hs_task_status` and `hs_task_priority`. Their only
association is HubSpot's task-to-contact type, 204.

HubSpot's files offer two ways to keep a re-run from making a task twice, and the
fake serves both: `batch/upsert` by a property with unique values (its inputs carry
no associations), and `search`, whose filters may name the pseudo-property
`associations.contact`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from http import HTTPStatus
from typing import Any

from pqlhub_hubspot.fake_crm.api import (
    BODY,
    ApiError,
    Call,
    JsonObject,
    Reply,
    as_text,
    bad_request,
    batch_inputs,
    batch_reply,
    check_unique,
    cursor,
    invalid_values,
    names_of,
    now_iso,
    object_of,
    problem,
    property_values,
    standard_error,
    text_of,
    unique,
    upsert_input,
)
from pqlhub_hubspot.fake_crm.properties import is_number, option_problem
from pqlhub_hubspot.fake_crm.store import Crm

TASK_TO_CONTACT = 204
MAX_SEARCH_PAGE = 200
SYSTEM_PROPERTIES = ("hs_object_id", "hs_createdate", "hs_lastmodifieddate")
CHOICES = {
    "hs_task_status": (
        "NOT_STARTED",
        "IN_PROGRESS",
        "WAITING",
        "COMPLETED",
        "DEFERRED",
    ),
    "hs_task_priority": ("NONE", "LOW", "MEDIUM", "HIGH"),
}
REQUIRED_MISSING = "Error creating TASK. Some required properties were not set."
TOKEN_SPLIT = re.compile(r"\W+")

NewTask = tuple[dict[str, str], list[str]]


def create_task(crm: Crm, call: Call) -> Reply:
    """`POST /crm/v3/objects/tasks`: one task, maybe associated with contacts."""
    values, contact_ids = _new_task(call.json(), BODY)
    missing = [cid for cid in contact_ids if cid not in crm.contacts]
    if missing:
        raise bad_request(_no_contact(missing), ids=missing)
    return Reply(HTTPStatus.CREATED, task_object(_store(crm, values, contact_ids)))


def create_tasks(crm: Crm, call: Call) -> Reply:
    """`POST /crm/v3/objects/tasks/batch/create`: 201, or 207 when some fail."""
    started = now_iso()
    raw = batch_inputs(call.json())
    inputs = [_new_task(item, f"inputs[{n}]") for n, item in enumerate(raw)]
    results: list[JsonObject] = []
    errors: list[JsonObject] = []
    for values, contact_ids in inputs:
        missing = [cid for cid in contact_ids if cid not in crm.contacts]
        if missing:
            message = _no_contact(missing)
            errors.append(standard_error("VALIDATION_ERROR", message, {"ids": missing}))
        else:
            results.append(task_object(_store(crm, values, contact_ids)))
    return batch_reply(results, errors, started, HTTPStatus.CREATED)


def upsert_tasks(crm: Crm, call: Call) -> Reply:
    """`POST /crm/v3/objects/tasks/batch/upsert`, by a property with unique values.

    Each input names its `idProperty` (or the query string does, as the spec's
    description has it). A task made here is associated with no contact.
    """
    started = now_iso()
    default = call.arg("idProperty")
    raw = batch_inputs(call.json())
    inputs = [
        _upsert_input(item, f"inputs[{n}]", default) for n, item in enumerate(raw)
    ]
    check_unique([f"{id_property}={key}" for id_property, key, _ in inputs])
    planned = [(_find(crm, p, k), p, k, v) for p, k, v in inputs]
    for task, id_property, key, values in planned:
        if task is None and id_property != "hs_object_id":
            _check_required(values, key)
    results: list[JsonObject] = []
    errors: list[JsonObject] = []
    for task, id_property, key, values in planned:
        if task is not None:
            results.append({**task_object(_update(task, values)), "new": False})
        elif id_property == "hs_object_id":
            message = f"Task {key} does not exist."
            errors.append(standard_error("OBJECT_NOT_FOUND", message, {"ids": [key]}))
        else:
            created = _store(crm, {**values, id_property: key}, [])
            results.append({**task_object(created), "new": True})
    return batch_reply(results, errors, started, HTTPStatus.OK)


def search_tasks(crm: Crm, call: Call) -> Reply:
    """`POST /crm/v3/objects/tasks/search`: filter groups, sorts, paging."""
    body = object_of(call.json(), BODY)
    limit = body.get("limit", 10)
    if not isinstance(limit, int) or not 1 <= limit <= MAX_SEARCH_PAGE:
        message = f"limit must be from 1 to {MAX_SEARCH_PAGE}, not {limit!r}."
        raise bad_request(message)
    offset = cursor(str(body.get("after") or "0"), "after")
    groups = _filter_groups(body.get("filterGroups"))
    query = str(body.get("query") or "").casefold()
    matched = [t for t in crm.tasks if _passes(t, groups) and _mentions(t, query)]
    matched = _sorted(matched, body.get("sorts") or [])
    names = names_of(body.get("properties"), "properties") or None
    answer: JsonObject = {
        "total": len(matched),
        "results": [task_object(t, names) for t in matched[offset : offset + limit]],
    }
    if offset + limit < len(matched):
        after = str(offset + limit)
        link = f"{call.base_url}{call.path}?after={after}"
        answer["paging"] = {"next": {"after": after, "link": link}}
    return Reply(HTTPStatus.OK, answer)


def task_object(
    task: Mapping[str, Any], names: Iterable[str] | None = None
) -> JsonObject:
    """Return a task as a `SimplePublicObject`: all properties, or those named."""
    properties: dict[str, str] = dict(task["properties"])
    if names is not None:
        shown = {*names, *SYSTEM_PROPERTIES}
        properties = {k: v for k, v in properties.items() if k in shown}
    return {
        "id": task["id"],
        "properties": properties,
        "createdAt": task["createdAt"],
        "updatedAt": task["updatedAt"],
        "archived": False,
    }


# ---------------------------------------------------------------------- writes


def _new_task(raw: Any, where: str) -> NewTask:
    """Return a new task's property values and associated contact ids, checked."""
    item = object_of(raw, where)
    values = property_values(item.get("properties"), where)
    _check_required(values)
    _check_values(values)
    associations = item.get("associations") or []
    if not isinstance(associations, list):
        raise bad_request(f"{where}.associations must be an array.")
    contacts = (
        _contact_id(a, f"{where}.associations[{n}]") for n, a in enumerate(associations)
    )
    return values, unique(contacts)


def _upsert_input(
    raw: Any, where: str, default: str | None
) -> tuple[str, str, dict[str, str]]:
    id_property, key, values = upsert_input(raw, where)
    id_property = id_property or default
    if not id_property:
        raise bad_request(
            f"{where} names no idProperty; tasks are upserted by a property with "
            "unique values."
        )
    _check_values(values)
    return id_property, key, values


def _check_required(values: Mapping[str, str], key: str | None = None) -> None:
    if not values.get("hs_timestamp"):
        context = {"properties": ["hs_timestamp"], **({"ids": [key]} if key else {})}
        raise ApiError(400, "VALIDATION_ERROR", REQUIRED_MISSING, context=context)


def _check_values(values: Mapping[str, str]) -> None:
    problems = [
        option_problem(name, values[name], allowed)
        for name, allowed in CHOICES.items()
        if values.get(name) and values[name] not in allowed
    ]
    stamp = values.get("hs_timestamp")
    if stamp and not _is_timestamp(stamp):
        message = f"{stamp} is neither epoch milliseconds nor an ISO 8601 time"
        problems.append(problem("hs_timestamp", "INVALID_DATE", message))
    if problems:
        raise invalid_values(problems)


def _is_timestamp(value: str) -> bool:
    if value.isdigit():
        return True
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _contact_id(raw: Any, where: str) -> str:
    """Return the contact a task association points to, refusing other kinds."""
    item = object_of(raw, where)
    target, types = item.get("to"), item.get("types")
    if not isinstance(target, dict) or not isinstance(target.get("id"), str | int):
        raise bad_request(f"{where}.to must name a record id.")
    if not isinstance(types, list) or not types or not all(map(_to_contact, types)):
        raise bad_request(
            f"{where}: the fake HubSpot knows only the HubSpot-defined task-to-contact "
            f"association (associationTypeId {TASK_TO_CONTACT})."
        )
    return str(target["id"])


def _to_contact(raw: Any) -> bool:
    return (
        isinstance(raw, dict)
        and raw.get("associationCategory") == "HUBSPOT_DEFINED"
        and raw.get("associationTypeId") == TASK_TO_CONTACT
    )


def _no_contact(missing: Sequence[str]) -> str:
    return f"No contact has the id {', '.join(missing)}; the task cannot name it."


def _store(
    crm: Crm, values: Mapping[str, str], contact_ids: Sequence[str]
) -> JsonObject:
    task_id = crm.new_record_id()
    stamp = now_iso()
    system = dict(zip(SYSTEM_PROPERTIES, (task_id, stamp, stamp), strict=True))
    task: JsonObject = {
        "id": task_id,
        "properties": {**values, **system},
        "contactIds": list(contact_ids),
        "createdAt": stamp,
        "updatedAt": stamp,
    }
    crm.tasks.append(task)
    return task


def _update(task: JsonObject, values: Mapping[str, str]) -> JsonObject:
    stamp = now_iso()
    task["properties"].update(values, hs_lastmodifieddate=stamp)
    task["updatedAt"] = stamp
    return task


def _find(crm: Crm, id_property: str, key: str) -> JsonObject | None:
    matches = (t for t in crm.tasks if t["properties"].get(id_property) == key)
    return next(matches, None)


# ---------------------------------------------------------------------- search


def _filter_groups(raw: Any) -> list[list[JsonObject]]:
    """Return the search's filter groups, each a list of checked filters."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad_request("filterGroups must be an array of filter groups.")
    groups = [object_of(group, "A filter group").get("filters") or [] for group in raw]
    return [[_filter(flt) for flt in group] for group in groups]


def _filter(raw: Any) -> JsonObject:
    flt = object_of(raw, "A filter")
    text_of(flt, "propertyName", "A filter")
    if flt.get("operator") not in COMPARISONS and flt.get("operator") not in RANGES:
        raise bad_request(f"A filter's operator {flt.get('operator')!r} is not known.")
    return flt


def _passes(task: Mapping[str, Any], groups: Sequence[Sequence[JsonObject]]) -> bool:
    """Say whether a task passes any group's filters (all of them)."""
    if not groups:
        return True
    return any(all(_matches(task, flt) for flt in group) for group in groups)


def _matches(task: Mapping[str, Any], flt: Mapping[str, Any]) -> bool:
    name, op = flt["propertyName"], flt["operator"]
    if name == "associations.contact":
        actual: list[str] = list(task["contactIds"])
    else:
        value = task["properties"].get(name)
        actual = [] if value is None else [value]
    if op in RANGES:
        return any(_in_range(op, value, flt) for value in actual)
    wanted = as_text(flt.get("value")).casefold()
    values = {as_text(v).casefold() for v in flt.get("values") or []}
    return COMPARISONS[op]([v.casefold() for v in actual], wanted, values)


def _has_token(actual: Sequence[str], token: str) -> bool:
    return any(token in TOKEN_SPLIT.split(value) for value in actual)


Comparison = Callable[[Sequence[str], str, set[str]], bool]

COMPARISONS: dict[str, Comparison] = {
    "HAS_PROPERTY": lambda actual, _, __: bool(actual),
    "NOT_HAS_PROPERTY": lambda actual, _, __: not actual,
    "EQ": lambda actual, wanted, _: wanted in actual,
    "NEQ": lambda actual, wanted, _: wanted not in actual,
    "IN": lambda actual, _, values: any(v in values for v in actual),
    "NOT_IN": lambda actual, _, values: not any(v in values for v in actual),
    "CONTAINS_TOKEN": lambda actual, wanted, _: _has_token(actual, wanted),
    "NOT_CONTAINS_TOKEN": lambda actual, wanted, _: not _has_token(actual, wanted),
}
ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "LT": operator.lt,
    "LTE": operator.le,
    "GT": operator.gt,
    "GTE": operator.ge,
}
RANGES = frozenset({*ORDERINGS, "BETWEEN"})


def _in_range(op: str, value: str, flt: Mapping[str, Any]) -> bool:
    key, low = _sort_key(value), _sort_key(as_text(flt.get("value")))
    if op == "BETWEEN":
        return low <= key <= _sort_key(as_text(flt.get("highValue")))
    return ORDERINGS[op](key, low)


def _sort_key(value: str) -> tuple[int, float, str]:
    """Order numbers as numbers, and before any text."""
    return (0, float(value), "") if is_number(value) else (1, 0.0, value.casefold())


def _sorted(tasks: list[JsonObject], sorts: Any) -> list[JsonObject]:
    """Sort search results; `sorts` may hold objects or (as the spec says) strings."""
    if not isinstance(sorts, list):
        raise bad_request("sorts must be an array.")
    ordered = sorted(tasks, key=lambda task: int(task["id"]))
    for sort in reversed(sorts):
        if isinstance(sort, dict):
            name = str(sort.get("propertyName", ""))
            descending = sort.get("direction") == "DESCENDING"
        else:
            name, descending = str(sort).lstrip("-"), str(sort).startswith("-")
        ordered.sort(key=_by_property(name), reverse=descending)
    return ordered


def _by_property(name: str) -> Callable[[JsonObject], tuple[int, float, str]]:
    return lambda task: _sort_key(task["properties"].get(name, ""))


def _mentions(task: Mapping[str, Any], query: str) -> bool:
    texts = task["properties"].values()
    return not query or any(query in value.casefold() for value in texts)
