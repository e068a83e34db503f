"""The fake's records: contacts, contact properties, lists and tasks, in memory."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from pqlhub_hubspot.fake_crm.api import ApiError, JsonObject, now_iso
from pqlhub_hubspot.fake_crm.properties import builtin_properties


class Crm:
    """HubSpot's records, in memory, and the lookups the endpoints share.

    Args:
        membership_cap: The most record ids one list membership change may name.

    Attributes:
        contacts: Record id to properties (all strings). Emails are unique,
            whatever their case, and kept in lower case.
        properties: Contact property name to its definition, options included.
        lists: List id to the list: `name`, `processingType`, `members` (a set of
            record ids), `joinedAt` (record id to timestamp) and the rest.
        tasks: Each task: `id`, `properties`, `contactIds`, `createdAt`,
            `updatedAt`.
        rejected: Casefolded email to the message its batch inputs fail with.
    """

    def __init__(self, membership_cap: int = 1000) -> None:
        self.membership_cap = membership_cap
        self.contacts: dict[str, dict[str, str]] = {}
        self.properties = {prop["name"]: prop for prop in builtin_properties()}
        self.lists: dict[str, JsonObject] = {}
        self.tasks: list[JsonObject] = []
        self.rejected: dict[str, str] = {}
        # One sequence for contacts and tasks, so that neither id passes for
        # the other.
        self._record_ids = itertools.count(1001)
        self._list_ids = itertools.count(1)
        self._emails: dict[str, str] = {}

    def new_record_id(self) -> str:
        """Return a record id no contact or task has."""
        return str(next(self._record_ids))

    def new_list_id(self) -> str:
        """Return a list id no list has."""
        return str(next(self._list_ids))

    def contact_by_email(self, email: str) -> dict[str, str] | None:
        """Return the contact with this email, whatever its case, or None."""
        record_id = self._emails.get(email.casefold())
        return None if record_id is None else self.contacts[record_id]

    def find_contact(self, id_property: str | None, value: str) -> str | None:
        """Return the record id of the contact whose `id_property` is `value`."""
        if id_property in (None, "hs_object_id"):
            return value if value in self.contacts else None
        if id_property == "email":
            return self._emails.get(value.casefold())
        matches = (
            rid
            for rid, props in self.contacts.items()
            if props.get(id_property) == value
        )
        return next(matches, None)

    def create_contact(self, values: Mapping[str, str]) -> str:
        """Add a contact with these property values; return its record id."""
        record_id = self.new_record_id()
        stamp = now_iso()
        self.contacts[record_id] = {
            "hs_object_id": record_id,
            "createdate": stamp,
            "lastmodifieddate": stamp,
        }
        self.update_contact(record_id, values)
        return record_id

    def update_contact(self, record_id: str, values: Mapping[str, str]) -> None:
        """Set a contact's property values; an empty string clears one.

        Raises:
            ApiError: When the new email is another contact's (409).
        """
        record = self.contacts[record_id]
        for name, value in values.items():
            if name == "email":
                self._move_email(record_id, record.get("email"), value)
                value = value.lower()
            if value:
                record[name] = value
            else:
                record.pop(name, None)
        record["lastmodifieddate"] = now_iso()

    def _move_email(self, record_id: str, old: str | None, new: str) -> None:
        owner = self._emails.get(new.casefold())
        if new and owner not in (None, record_id):
            message = f"Contact already exists. Existing ID: {owner}"
            raise ApiError(409, "CONFLICT", message)
        if old:
            self._emails.pop(old.casefold(), None)
        if new:
            self._emails[new.casefold()] = record_id

    def list_by_name(self, name: str) -> JsonObject | None:
        """Return the list with this name, whatever its case, or None."""
        wanted = name.casefold()
        matches = (
            lst for lst in self.lists.values() if lst["name"].casefold() == wanted
        )
        return next(matches, None)

    def member_emails(self, lst: Mapping[str, Any]) -> set[str]:
        """Return the emails of a list's members (record ids for those without)."""
        return {
            self.contacts.get(member, {}).get("email", member)
            for member in lst["members"]
        }
