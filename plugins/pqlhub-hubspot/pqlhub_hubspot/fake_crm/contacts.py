"""Contacts: batch upsert, read and create.

A batch with any invalid property value (an unknown or read-only property, a value
that is none of an enumeration's options, a malformed email) fails whole with 400
`VALIDATION_ERROR` and `Property values were not valid: [...]`, as HubSpot does.
Inputs the fake was told to reject (`FakeHubSpot.reject_inputs`) fail one by one,
in a 207 answer. Unset properties are left out of answers: HubSpot sends `null`,
which its own schema does not allow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus

from pqlhub_hubspot.fake_crm.api import (
    BODY,
    MAX_BATCH,
    Call,
    JsonObject,
    Reply,
    bad_request,
    batch_inputs,
    batch_reply,
    check_unique,
    invalid_values,
    names_of,
    now_iso,
    object_of,
    property_values,
    standard_error,
    text_of,
    upsert_input,
)
from pqlhub_hubspot.fake_crm.properties import value_problem
from pqlhub_hubspot.fake_crm.store import Crm

MAX_HISTORY_BATCH = 50
DEFAULT_PROPERTIES = ("firstname", "lastname", "email")
SYSTEM_PROPERTIES = ("hs_object_id", "createdate", "lastmodifieddate")
NOT_FOUND = (
    "Could not get some CONTACT objects, they may be deleted or not exist. "
    "Check that ids are valid."
)

Upsert = tuple[str | None, str, dict[str, str]]


def upsert_contacts(crm: Crm, call: Call) -> Reply:
    """`POST /crm/v3/objects/contacts/batch/upsert`: create or update by id."""
    started = now_iso()
    raw = batch_inputs(call.json())
    inputs = [upsert_input(item, f"inputs[{n}]") for n, item in enumerate(raw)]
    _check_upserts(crm, inputs)
    results: list[JsonObject] = []
    errors: list[JsonObject] = []
    for id_property, key, values in inputs:
        rejection = crm.rejected.get(key.casefold()) if id_property == "email" else None
        if rejection:
            errors.append(standard_error("VALIDATION_ERROR", rejection, {"ids": [key]}))
            continue
        result = _upsert(crm, id_property, key, values)
        if result is None:
            errors.append(standard_error("OBJECT_NOT_FOUND", NOT_FOUND, {"ids": [key]}))
        else:
            results.append(result)
    return batch_reply(results, errors, started, HTTPStatus.OK)


def read_contacts(crm: Crm, call: Call) -> Reply:
    """`POST /crm/v3/objects/contacts/batch/read`: by record id or a unique property."""
    started = now_iso()
    body = object_of(call.json(), BODY)
    history = names_of(body.get("propertiesWithHistory"), "propertiesWithHistory")
    inputs = batch_inputs(body, MAX_HISTORY_BATCH if history else MAX_BATCH)
    id_property = _id_property(crm, body.get("idProperty"))
    archived = call.arg("archived") == "true"
    found: dict[str, None] = {}
    missing: list[str] = []
    for n, item in enumerate(inputs):
        key = text_of(object_of(item, f"inputs[{n}]"), "id", f"inputs[{n}]")
        record_id = None if archived else crm.find_contact(id_property, key)
        if record_id is None:
            missing.append(key)
        else:
            found[record_id] = None
    wanted = names_of(body.get("properties"), "properties")
    results = [contact_object(crm, rid, wanted, history) for rid in found]
    errors = [standard_error("OBJECT_NOT_FOUND", NOT_FOUND, {"ids": missing})]
    return batch_reply(results, errors if missing else [], started, HTTPStatus.OK)


def create_contacts(crm: Crm, call: Call) -> Reply:
    """`POST /crm/v3/objects/contacts/batch/create`: new contacts only."""
    started = now_iso()
    raw = batch_inputs(call.json())
    inputs = [_create_input(item, f"inputs[{n}]") for n, item in enumerate(raw)]
    check_unique([v["email"].casefold() for v in inputs if v.get("email")])
    _check_values(crm, inputs)
    results: list[JsonObject] = []
    errors: list[JsonObject] = []
    for values in inputs:
        error = _creation_error(crm, values.get("email", ""))
        if error is None:
            record_id = crm.create_contact(values)
            results.append(contact_object(crm, record_id, values))
        else:
            errors.append(error)
    return batch_reply(results, errors, started, HTTPStatus.CREATED)


def contact_object(
    crm: Crm,
    record_id: str,
    names: Iterable[str] = (),
    history: Sequence[str] = (),
) -> JsonObject:
    """Return a contact as a `SimplePublicObject`, with the properties named.

    With no names, the defaults HubSpot sends: first name, last name and email.
    The record id and the create and modify times always come along.
    """
    record = crm.contacts[record_id]
    shown = [*(list(names) or DEFAULT_PROPERTIES), *SYSTEM_PROPERTIES]
    answer: JsonObject = {
        "id": record_id,
        "properties": {name: record[name] for name in shown if name in record},
        "createdAt": record["createdate"],
        "updatedAt": record["lastmodifieddate"],
        "archived": False,
    }
    if history:
        answer["propertiesWithHistory"] = {
            name: [_history_entry(record, name)] for name in history if name in record
        }
    return answer


def _history_entry(record: Mapping[str, str], name: str) -> JsonObject:
    # The fake keeps no history: the current value stands for all of it.
    modified = record["lastmodifieddate"]
    return {"value": record[name], "timestamp": modified, "sourceType": "API"}


def _create_input(raw: object, where: str) -> dict[str, str]:
    # TODO: associations sent with new contacts are accepted and dropped; the
    # fake keeps task-to-contact associations only, which is all pqlhub makes.
    return property_values(object_of(raw, where).get("properties"), where)


def _creation_error(crm: Crm, email: str) -> JsonObject | None:
    """Return the error a new contact with this email meets, if any."""
    rejection = crm.rejected.get(email.casefold()) if email else None
    if rejection:
        return standard_error("VALIDATION_ERROR", rejection, {"ids": [email]})
    existing = crm.find_contact("email", email) if email else None
    if existing is None:
        return None
    message = f"Contact already exists. Existing ID: {existing}"
    return standard_error("CONFLICT", message, {"existingId": [existing]})


def _check_upserts(crm: Crm, inputs: Sequence[Upsert]) -> None:
    """Refuse the whole batch when an input is malformed or a value invalid."""
    keyed = []
    for id_property, key, values in inputs:
        _id_property(crm, id_property)
        if id_property == "email":
            _check_same_email(key, values)
            values = {**values, "email": key}
        keyed.append(values)
    check_unique([key.casefold() for _, key, _ in inputs])
    _check_values(crm, keyed)


def _check_same_email(key: str, values: Mapping[str, str]) -> None:
    email = values.get("email", key)
    if email.casefold() != key.casefold():
        raise bad_request(
            f"The email property ({email}) differs from the id ({key}); to change "
            "an email address, update the contact by its record id."
        )


def _check_values(crm: Crm, inputs: Iterable[Mapping[str, str]]) -> None:
    problems = [
        found
        for values in inputs
        for name, value in values.items()
        if (found := value_problem(crm, name, value)) is not None
    ]
    if problems:
        raise invalid_values(problems)


def _upsert(
    crm: Crm, id_property: str | None, key: str, values: dict[str, str]
) -> JsonObject | None:
    """Create or update one contact; None when it must exist and does not."""
    record_id = crm.find_contact(id_property, key)
    if record_id is not None:
        crm.update_contact(record_id, values)
        return {**contact_object(crm, record_id, values), "new": False}
    if id_property in (None, "hs_object_id"):
        return None
    record_id = crm.create_contact({**values, str(id_property): key})
    return {**contact_object(crm, record_id, values), "new": True}


def _id_property(crm: Crm, name: object) -> str | None:
    """Return the property a batch names its contacts by, if it may."""
    if name is None:
        return None
    definition = crm.properties.get(name) if isinstance(name, str) else None
    if name in ("email", "hs_object_id") or (definition or {}).get("hasUniqueValue"):
        return str(name)
    message = f"{name} is not a property with unique values; it cannot name contacts."
    raise bad_request(message)
