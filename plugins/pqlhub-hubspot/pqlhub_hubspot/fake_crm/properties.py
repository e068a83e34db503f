"""Contact properties: their endpoints, the built-in ones, and checks of values.

A multi-checkbox property is `type: enumeration` with `fieldType: checkbox`; a
record holds the values of its chosen options joined by `;`. `PATCH` replaces a
property's options with those sent, as HubSpot does: to add an option, send the
old ones too.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from pqlhub_hubspot.fake_crm.api import (
    BODY,
    ApiError,
    Call,
    JsonObject,
    Reply,
    bad_request,
    not_found,
    now_iso,
    object_of,
    problem,
    text_of,
)

if TYPE_CHECKING:
    from pqlhub_hubspot.fake_crm.store import Crm

CONTACT_TYPE_NAMES = frozenset({"contacts", "contact", "0-1"})
PROPERTY_TYPES = frozenset(
    {"bool", "date", "datetime", "enumeration", "number", "phone_number", "string"}
)
FIELD_TYPES = frozenset(
    {
        "booleancheckbox",
        "calculation_equation",
        "checkbox",
        "date",
        "file",
        "html",
        "number",
        "phonenumber",
        "radio",
        "select",
        "text",
        "textarea",
    }
)
UPDATABLE = ("label", "description", "groupName", "displayOrder", "hidden", "formField")
PROPERTY_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+\Z")
BUILT_IN_TIME = "2019-08-06T02:41:52.000Z"
LIFECYCLE_STAGES = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)


def get_property(crm: Crm, call: Call) -> Reply:
    """`GET /crm/v3/properties/{objectType}/{propertyName}`."""
    return Reply(HTTPStatus.OK, copy.deepcopy(_stored(crm, call)))


def create_property(crm: Crm, call: Call) -> Reply:
    """`POST /crm/v3/properties/{objectType}`: 201 with a `Location` header."""
    _check_contacts(call.params["objectType"])
    definition = _new_property(object_of(call.json(), BODY))
    name = definition["name"]
    if name in crm.properties:
        raise ApiError(409, "CONFLICT", f"A property named {name} already exists.")
    crm.properties[name] = definition
    location = f"{call.base_url}/crm/v3/properties/contacts/{name}"
    return Reply(HTTPStatus.CREATED, copy.deepcopy(definition), {"Location": location})


def update_property(crm: Crm, call: Call) -> Reply:
    """`PATCH /crm/v3/properties/{objectType}/{propertyName}`."""
    definition = _stored(crm, call)
    if definition["modificationMetadata"]["readOnlyDefinition"]:
        message = f"{definition['name']} is defined by HubSpot and cannot be changed."
        raise bad_request(message)
    body = object_of(call.json(), BODY)
    changes = {key: body[key] for key in UPDATABLE if key in body}
    kind = body.get("type", definition["type"])
    field_type = body.get("fieldType", definition["fieldType"])
    _check_kinds(kind, field_type)
    changes.update(type=kind, fieldType=field_type)
    if "options" in body:
        changes["options"] = _options(body["options"], required=True)
    definition.update(changes, updatedAt=now_iso())
    return Reply(HTTPStatus.OK, copy.deepcopy(definition))


def value_problem(crm: Crm, name: str, value: str) -> JsonObject | None:
    """Say what is wrong with setting a contact property to a value, if anything."""
    definition = crm.properties.get(name)
    if definition is None:
        return problem(
            name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'
        )
    if definition["modificationMetadata"]["readOnlyValue"]:
        message = f'"{name}" is a read only property; its value cannot be set.'
        return problem(name, "READ_ONLY_VALUE", message)
    if value == "":
        return None
    if name == "email" and not EMAIL.match(value):
        return problem(name, "INVALID_EMAIL", f"Email address {value} is invalid")
    found = _kind_problem(definition, value)
    return None if found is None else problem(name, *found)


def option_problem(name: str, value: str, allowed: Sequence[str]) -> JsonObject:
    """Return the problem of a value that is none of a property's options."""
    message = f"{value} was not one of the allowed options: [{', '.join(allowed)}]"
    return problem(name, "INVALID_OPTION", message)


def is_number(value: str) -> bool:
    """Say whether a string holds a number, as a number property needs."""
    try:
        float(value)
    except ValueError:
        return False
    return True


def _kind_problem(definition: Mapping[str, Any], value: str) -> tuple[str, str] | None:
    """Return the error code and message for a value the property cannot hold."""
    kind = definition["type"]
    if kind == "enumeration":
        allowed = [option["value"] for option in definition["options"]]
        checkbox = definition["fieldType"] == "checkbox"
        unknown = [
            v for v in (value.split(";") if checkbox else [value]) if v not in allowed
        ]
        if unknown:
            found = option_problem(definition["name"], unknown[0], allowed)
            return found["error"], found["message"]
    elif kind == "bool" and value not in ("true", "false"):
        return "INVALID_BOOLEAN", f"{value} is not a valid boolean; use true or false"
    elif kind == "number" and not is_number(value):
        return "INVALID_NUMBER", f"{value} is not a valid number"
    return None


def _stored(crm: Crm, call: Call) -> JsonObject:
    _check_contacts(call.params["objectType"])
    name = call.params["propertyName"]
    definition = crm.properties.get(name)
    if definition is None:
        raise not_found(f"Unable to find property {name} on object type contacts.")
    return definition


def _check_contacts(object_type: str) -> None:
    if object_type not in CONTACT_TYPE_NAMES:
        message = f"The fake HubSpot keeps contact properties only, not {object_type}."
        raise bad_request(message)


def _check_kinds(kind: Any, field_type: Any) -> None:
    for name, value, allowed in (
        ("type", kind, PROPERTY_TYPES),
        ("fieldType", field_type, FIELD_TYPES),
    ):
        if value not in allowed:
            choices = ", ".join(sorted(allowed))
            raise bad_request(f"{name} must be one of {choices}, not {value!r}.")


def _new_property(body: Mapping[str, Any]) -> JsonObject:
    """Return the definition a `PropertyCreate` body asks for, checked."""
    required = ("name", "label", "type", "fieldType", "groupName")
    fields = {key: text_of(body, key, BODY) for key in required}
    if not PROPERTY_NAME.match(fields["name"]):
        raise bad_request(
            "A property name is lower-case letters, digits and underscores, "
            f"starting with a letter; {fields['name']} is not."
        )
    _check_kinds(fields["type"], fields["fieldType"])
    enumerated = fields["type"] == "enumeration"
    stamp = now_iso()
    return {
        **fields,
        "description": str(body.get("description", "")),
        "options": _options(body.get("options"), required=enumerated),
        "displayOrder": int(body.get("displayOrder", -1)),
        "hasUniqueValue": bool(body.get("hasUniqueValue", False)),
        "hidden": bool(body.get("hidden", False)),
        "formField": bool(body.get("formField", False)),
        "calculated": False,
        "externalOptions": False,
        "archived": False,
        "createdAt": stamp,
        "updatedAt": stamp,
        "modificationMetadata": _modification(defined_by_hubspot=False),
    }


def _options(raw: Any, *, required: bool) -> list[JsonObject]:
    """Return property options from `OptionInput`s, checked."""
    if raw is None and not required:
        return []
    if not isinstance(raw, list):
        raise bad_request("options must be an array; enumerations need them.")
    options = [_option(item, n) for n, item in enumerate(raw)]
    values = [option["value"] for option in options]
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise bad_request(f"Option values must be unique; {repeated} are repeated.")
    return options


def _option(raw: Any, index: int) -> JsonObject:
    where = f"options[{index}]"
    item = object_of(raw, where)
    option: JsonObject = {
        "label": text_of(item, "label", where),
        "value": text_of(item, "value", where),
        "hidden": bool(item.get("hidden", False)),
        "displayOrder": int(item.get("displayOrder", index)),
    }
    if isinstance(item.get("description"), str):
        option["description"] = item["description"]
    return option


def _modification(*, defined_by_hubspot: bool, read_only: bool = False) -> JsonObject:
    return {
        "archivable": not defined_by_hubspot,
        "readOnlyDefinition": defined_by_hubspot,
        "readOnlyValue": read_only,
        "readOnlyOptions": False,
    }


def _built_in(
    name: str,
    label: str,
    kind: str,
    field_type: str,
    options: Sequence[str] = (),
    *,
    read_only: bool = False,
) -> JsonObject:
    """Return one property HubSpot defines for contacts."""
    return {
        "name": name,
        "label": label,
        "type": kind,
        "fieldType": field_type,
        "groupName": "contactinformation",
        "description": "",
        "options": [
            {"label": value.title(), "value": value, "hidden": False, "displayOrder": n}
            for n, value in enumerate(options)
        ],
        "displayOrder": -1,
        "hasUniqueValue": False,
        "hidden": False,
        "formField": not read_only,
        "calculated": False,
        "externalOptions": False,
        "hubspotDefined": True,
        "archived": False,
        "createdAt": BUILT_IN_TIME,
        "updatedAt": BUILT_IN_TIME,
        "modificationMetadata": _modification(
            defined_by_hubspot=True, read_only=read_only
        ),
    }


def builtin_properties() -> list[JsonObject]:
    """Return the contact properties every HubSpot account starts with (some)."""
    return [
        _built_in("email", "Email", "string", "text"),
        _built_in("firstname", "First Name", "string", "text"),
        _built_in("lastname", "Last Name", "string", "text"),
        _built_in("phone", "Phone Number", "string", "phonenumber"),
        _built_in("company", "Company Name", "string", "text"),
        _built_in("jobtitle", "Job Title", "string", "text"),
        _built_in(
            "lifecyclestage",
            "Lifecycle Stage",
            "enumeration",
            "radio",
            LIFECYCLE_STAGES,
        ),
        _built_in("hs_object_id", "Record ID", "number", "number", read_only=True),
        _built_in("createdate", "Create Date", "datetime", "date", read_only=True),
        _built_in(
            "lastmodifieddate", "Last Modified", "datetime", "date", read_only=True
        ),
    ]
