"""The HubSpot destination: contacts, a segments property, static lists and tasks.

Actions:

- `upsert_contact` creates or updates contacts by email (batch upsert, 100 a
  request), sending the sync's mapped fields as contact properties.
- `set_segments` keeps a multi-checkbox contact property (`pql_segments` by default)
  holding the segments each contact is in; the property and its options are created
  as segments appear.
- `add_to_list` / `remove_from_list` keep one static (MANUAL) list per segment, named
  after it (with an optional prefix), created when missing.
- `create_task` creates a follow-up task for the contact's owner on enter, once: a
  re-run, or a batch sent again after a crash, never makes a second one.

Contacts are resolved to HubSpot record ids with batch reads and the ids are cached
in the ledger; an exit carries the fields last sent, so the email an enter was sent
with is what finds the contact again. Requests stay under
HubSpot's ten-second rolling limit; a 429 for that limit waits, a 429 for the
daily limit stops the sync with a message, and so does a 401 or a 403 (naming the
scope the token lacks).

Batches run concurrently (`limits.concurrency`). Whatever two batches could race
on is serialised here: the segments property's options, the creation of a list,
and the read-then-write of one contact's segments.
"""

from __future__ import annotations

import hashlib
import re
import string
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final

import httpx
import orjson

from pqlhub import (
    Action,
    Batch,
    Change,
    CheckResult,
    Destination,
    DestinationContext,
    FailureKind,
    FatalSyncError,
    Limits,
    Outcome,
    RateLimit,
    RetriableSyncError,
    Secret,
    SkippableSyncError,
    TransientHttpError,
)

__all__ = ["HubSpotDestination"]

API: Final = "https://api.hubapi.com"
BATCH_LIMIT: Final = 100
CONTACTS: Final = "0-1"
TASK_TO_CONTACT: Final = 204
TEN_SECONDS: Final = 10.0
# Keep a little under the vendor's window: its clock starts when a request
# arrives, ours when it leaves.
WINDOW_MARGIN: Final = 0.2

_SECRET: Final = {"$ref": "https://pqlhub.dev/schemas/defs.schema.json#/$defs/secret"}
_TEMPLATE: Final = {"type": "string", "minLength": 1}
_TRANSIENT_STATUSES: Final = frozenset({423, 477, 524})

Json = dict[str, Any]


def _action(
    name: str, text: str, on: set[str], args: Mapping[str, Any] | None = None
) -> Action:
    schema = {
        "type": "object",
        "properties": dict(args or {}),
        "additionalProperties": False,
    }
    return Action(name, text, frozenset(on), schema, BATCH_LIMIT)  # type: ignore[arg-type]


class HubSpotDestination(Destination):
    """Sends segment changes to HubSpot's CRM API."""

    name = "hubspot"
    config_schema: ClassVar[Mapping[str, Any]] = {
        "type": "object",
        "properties": {
            "token": {**_SECRET, "description": "A private app's access token."},
            "base_url": {
                "type": "string",
                "pattern": "^https?://",
                "default": API,
                "description": "The API's address; point it at the fake for tests.",
            },
            "rate_limit": {
                "type": "integer",
                "minimum": 1,
                "default": 100,
                "description": "Requests per ten seconds your HubSpot tier allows "
                "(100 on Free and Starter, 190 on Professional and Enterprise).",
            },
            "email_field": {
                "type": "string",
                "default": "email",
                "description": "The sync field holding the contact's email.",
            },
            "create_contacts": {
                "type": "boolean",
                "default": True,
                "description": "Create contacts missing from HubSpot when a list "
                "or task needs them.",
            },
            "segments_property": {
                "type": "string",
                "pattern": "^[a-z][a-z0-9_]*$",
                "default": "pql_segments",
            },
            "list_prefix": {"type": "string", "default": ""},
        },
        "required": ["token"],
        "additionalProperties": False,
    }
    actions: ClassVar[Mapping[str, Action]] = {
        "upsert_contact": _action(
            "upsert_contact",
            "Create or update the contact by email with the sync's fields.",
            {"enter"},
        ),
        "set_segments": _action(
            "set_segments",
            "Add the segment to (or remove it from) the contact's segments property.",
            {"enter", "exit"},
        ),
        "add_to_list": _action(
            "add_to_list", "Add the contact to the segment's static list.", {"enter"}
        ),
        "remove_from_list": _action(
            "remove_from_list",
            "Remove the contact from the segment's static list.",
            {"exit"},
        ),
        "create_task": _action(
            "create_task",
            "Create a follow-up task for the contact, once.",
            {"enter"},
            {
                "subject": _TEMPLATE,
                "body": {"type": "string"},
                "due_in_days": {"type": "integer", "minimum": 0, "default": 1},
                "priority": {"enum": ["LOW", "MEDIUM", "HIGH"], "default": "MEDIUM"},
                "type": {"enum": ["TODO", "CALL", "EMAIL"], "default": "TODO"},
                "owner_id": {"type": "string", "pattern": "^[0-9]+$"},
                "owner_field": {"type": "string", "minLength": 1},
            },
        ),
    }
    limits: ClassVar[Limits] = Limits(
        batch_size=BATCH_LIMIT,
        concurrency=4,
        rate=RateLimit(100, TEN_SECONDS + WINDOW_MARGIN),
    )

    def __init__(self, config: Mapping[str, Any], context: DestinationContext) -> None:
        super().__init__(config, context)
        token = config["token"]
        secret = token.reveal() if isinstance(token, Secret) else str(token)
        self.email_field = config.get("email_field", "email")
        self.create_contacts = config.get("create_contacts", True)
        self.segments_property = config.get("segments_property", "pql_segments")
        self.list_prefix = config.get("list_prefix", "")
        rate = RateLimit(config.get("rate_limit", 100), TEN_SECONDS + WINDOW_MARGIN)
        self.client = context.http(
            base_url=config.get("base_url", API),
            headers={"Authorization": f"Bearer {secret}"},
            classify=_classify,
            fatal_hint=(
                f"the token of destination {context.name!r}: it must be a private "
                "app token with the scopes crm.objects.contacts.read, "
                "crm.objects.contacts.write, crm.schemas.contacts.read, "
                "crm.schemas.contacts.write, crm.lists.read and crm.lists.write"
            ),
            rate=rate,
        )
        self.state = context.state
        self._options_known: set[str] = set()
        self._options_lock = threading.Lock()
        self._lists_lock = threading.Lock()
        self._busy: set[str] = set()
        self._free = threading.Condition()

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()

    def _request(self, method: str, path: str, json: Any = None) -> httpx.Response:
        # A 403 is read here rather than by the client: HubSpot's answer names
        # the scopes the token lacks, which is what the user has to fix.
        response = self.client.request(method, path, json=json, fatal=(401,))
        self._observe(response)
        if response.status_code == 403:
            raise FatalSyncError(self._forbidden(method, path, response))
        return response

    def _forbidden(self, method: str, path: str, response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        scopes = _missing_scopes(body)
        refused = f"HubSpot refused {method} {path} with HTTP 403"
        if scopes:
            return (
                f"{refused}: the token of destination {self.context.name!r} lacks "
                f"the scope {', '.join(scopes)}. Add it to the private app's scopes "
                "in HubSpot (Settings > Integrations > Private Apps)."
            )
        return (
            f"{refused} ({_message(body, response)}). Check {self.client.fatal_hint}."
        )

    def _observe(self, response: httpx.Response) -> None:
        """Follow HubSpot's rate-limit headers: its limit, and an exhausted window."""
        limiter = self.client.rate_limiter
        if limiter is None:
            return
        ceiling = response.headers.get("X-HubSpot-RateLimit-Max", "")
        if ceiling.isdigit() and 0 < int(ceiling) < limiter.requests:
            self.context.logger.warning(
                "HubSpot allows %s requests per window, fewer than the %d configured; "
                "using its figure.",
                ceiling,
                limiter.requests,
            )
            limiter.requests = int(ceiling)
        remaining = response.headers.get("X-HubSpot-RateLimit-Remaining", "")
        if remaining.isdigit():
            # Other clients of the same app share the allowance: count what they
            # used as used, rather than walk into a 429.
            limiter.use_up(int(remaining))

    # ------------------------------------------------------------------ apply

    def apply(self, batch: Batch) -> Sequence[Outcome]:
        """Apply one batch (at most 100 changes) with the batch's action."""
        handlers = {
            "upsert_contact": self._upsert_contacts,
            "set_segments": self._set_segments,
            "add_to_list": self._add_to_lists,
            "remove_from_list": self._remove_from_lists,
            "create_task": self._create_tasks,
        }
        return handlers[batch.action](batch)

    def _email(self, change: Change) -> str | None:
        value = change.fields.get(self.email_field)
        if isinstance(value, str) and "@" in value:
            return value.strip().lower()
        if "@" in change.key:
            return change.key.strip().lower()
        return None

    def _without_email(self, change: Change) -> Outcome:
        reason = (
            f"The contact has no email in field {self.email_field!r}, which "
            "HubSpot needs to find it; map it in the sync's fields."
        )
        return Outcome.failed(change, FailureKind.DATA, reason)

    def _split(
        self, changes: Sequence[Change]
    ) -> tuple[dict[str, list[Change]], list[Outcome]]:
        """Group changes by the contact's email.

        An exit carries the fields its enter was last sent with, so its email is
        the one that found the contact in HubSpot.
        """
        by_email: dict[str, list[Change]] = {}
        outcomes = []
        for change in changes:
            email = self._email(change)
            if email is None:
                outcomes.append(self._without_email(change))
            else:
                by_email.setdefault(email, []).append(change)
        return by_email, outcomes

    # -------------------------------------------------------- upsert_contact

    def _upsert_contacts(self, batch: Batch) -> list[Outcome]:
        by_email, outcomes = self._split(batch.changes)
        if not by_email:
            return outcomes
        inputs = [
            {
                "id": email,
                "idProperty": "email",
                "properties": _properties(changes[-1].fields, self.email_field, email),
            }
            for email, changes in by_email.items()
        ]
        ids, errors = self._upsert(inputs)
        outcomes += _settle(by_email, ids, errors)
        self._remember(ids)
        return outcomes

    def _upsert(self, inputs: list[Json]) -> tuple[dict[str, str], dict[str, str]]:
        response = self._request(
            "POST", "/crm/v3/objects/contacts/batch/upsert", json={"inputs": inputs}
        )
        body = _json(response, "upserting contacts")
        ids = {
            str(r.get("properties", {}).get("email", "")).lower(): str(r["id"])
            for r in body.get("results", [])
        }
        errors = _input_errors(body, [str(i["id"]) for i in inputs])
        if response.status_code not in (200, 201, 207):
            reason = _message(body, response)
            errors = {str(i["id"]): reason for i in inputs if str(i["id"]) not in ids}
        return ids, errors

    # ---------------------------------------------------------- record ids

    def _record_ids(
        self, emails: Sequence[str], create: bool
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Return record ids by email (from the cache, a batch read, or created)."""
        cached = self.state.get_many(f"contact:{e}" for e in emails)
        ids = {e: cached[f"contact:{e}"] for e in emails if f"contact:{e}" in cached}
        unknown = [e for e in emails if e not in ids]
        errors: dict[str, str] = {}
        if unknown:
            found = self._read_ids(unknown)
            ids.update(found)
            self._remember(found)
            absent = [e for e in unknown if e not in found]
            if absent and create:
                inputs = [
                    {"id": e, "idProperty": "email", "properties": {"email": e}}
                    for e in absent
                ]
                made, errors = self._upsert(inputs)
                ids.update(made)
                self._remember(made)
            elif absent:
                errors = dict.fromkeys(
                    absent, "The contact is not in HubSpot, and create_contacts is off."
                )
        return ids, errors

    def _read_ids(self, emails: Sequence[str]) -> dict[str, str]:
        body = {
            "inputs": [{"id": email} for email in emails],
            "idProperty": "email",
            "properties": ["email"],
            "propertiesWithHistory": [],
        }
        response = self._request(
            "POST", "/crm/v3/objects/contacts/batch/read", json=body
        )
        found = _json(response, "reading contacts")
        return {
            str(r.get("properties", {}).get("email", "")).lower(): str(r["id"])
            for r in found.get("results", [])
        }

    def _remember(self, ids: Mapping[str, str]) -> None:
        if ids:
            self.state.update({f"contact:{email}": rid for email, rid in ids.items()})

    # ------------------------------------------------------------ set_segments

    def _set_segments(self, batch: Batch) -> list[Outcome]:
        by_email, outcomes = self._split(batch.changes)
        if not by_email:
            return outcomes
        self._ensure_options({c.segment for c in batch.changes if c.kind != "exit"})
        # Read, change and write each contact's segments with no other batch
        # doing the same to it in between, or one batch's segment would be lost.
        with self._reserved(by_email):
            current = self._current_segments(list(by_email))
            inputs = []
            for email, changes in by_email.items():
                refused = [] if email in current else self._absent(changes)
                if refused:
                    outcomes += refused
                    continue
                values = _segments_after(current.get(email, set()), changes)
                properties = {
                    "email": email,
                    self.segments_property: ";".join(sorted(values)),
                }
                inputs.append(
                    {"id": email, "idProperty": "email", "properties": properties}
                )
            if not inputs:
                return outcomes
            ids, errors = self._upsert(inputs)
        sent = {str(i["id"]): by_email[str(i["id"])] for i in inputs}
        outcomes += _settle(sent, ids, errors)
        self._remember(ids)
        return outcomes

    def _absent(self, changes: Sequence[Change]) -> list[Outcome]:
        """Return outcomes for a contact missing from HubSpot, which set_segments
        creates only when an enter needs it and create_contacts allows it."""
        if any(c.kind != "exit" for c in changes) and not self.create_contacts:
            reason = "The contact is not in HubSpot, and create_contacts is off."
            return [Outcome.failed(c, FailureKind.DATA, reason) for c in changes]
        if all(c.kind == "exit" for c in changes):
            reason = "The contact is not in HubSpot; it holds no segments to remove."
            return [Outcome.skipped(c, reason) for c in changes]
        return []

    @contextmanager
    def _reserved(self, emails: Iterable[str]) -> Iterator[None]:
        """Hold these contacts for one batch; others touching any of them wait.

        All are taken at once or none, so two batches never wait on each other.
        """
        wanted = set(emails)
        with self._free:
            self._free.wait_for(lambda: not wanted & self._busy)
            self._busy |= wanted
        try:
            yield
        finally:
            with self._free:
                self._busy -= wanted
                self._free.notify_all()

    def _current_segments(self, emails: Sequence[str]) -> dict[str, set[str]]:
        body = {
            "inputs": [{"id": email} for email in emails],
            "idProperty": "email",
            "properties": ["email", self.segments_property],
            "propertiesWithHistory": [],
        }
        response = self._request(
            "POST", "/crm/v3/objects/contacts/batch/read", json=body
        )
        found = _json(response, "reading contacts")
        current = {}
        for record in found.get("results", []):
            properties = record.get("properties", {})
            value = properties.get(self.segments_property) or ""
            email = str(properties.get("email", "")).lower()
            current[email] = {item for item in value.split(";") if item}
        return current

    def _ensure_options(self, segments: set[str]) -> None:
        """Make sure the segments property has an option for each segment."""
        wanted = {option_value(s): s for s in segments}
        if set(wanted) <= self._options_known:
            return
        # One batch at a time: a PATCH replaces the options, so two at once
        # would each drop the other's new ones.
        with self._options_lock:
            if not set(wanted) <= self._options_known:
                self._add_options(wanted)

    def _add_options(self, wanted: Mapping[str, str]) -> None:
        path = f"/crm/v3/properties/contacts/{self.segments_property}"
        response = self._request("GET", path)
        if response.status_code == 404:
            self._create_property(wanted)
            return
        definition = _json(response, "reading the segments property")
        options = definition.get("options", [])
        have = {str(option["value"]) for option in options}
        self._options_known |= have
        new = [value for value in wanted if value not in have]
        if not new:
            return
        options = [
            *options,
            *(_option(wanted[v], v, len(options) + i) for i, v in enumerate(new)),
        ]
        response = self._request("PATCH", path, json={"options": options})
        _json(response, "adding segment options")
        self._options_known |= set(new)

    def _create_property(self, wanted: Mapping[str, str]) -> None:
        body = {
            "name": self.segments_property,
            "label": "PQL segments",
            "type": "enumeration",
            "fieldType": "checkbox",
            "groupName": "contactinformation",
            "description": "The product-qualified-lead segments the contact is in, "
            "kept by pqlhub.",
            "options": [
                _option(name, value, i)
                for i, (value, name) in enumerate(sorted(wanted.items()))
            ],
        }
        response = self._request("POST", "/crm/v3/properties/contacts", json=body)
        if response.status_code == 409:
            # Made meanwhile by another run: add the options to it instead.
            self._options_known.clear()
            self._add_options(wanted)
            return
        _json(response, "creating the segments property")
        self._options_known |= set(wanted)

    # ------------------------------------------------------------------ lists

    def _add_to_lists(self, batch: Batch) -> list[Outcome]:
        return self._change_lists(batch, "add")

    def _remove_from_lists(self, batch: Batch) -> list[Outcome]:
        return self._change_lists(batch, "remove")

    def _change_lists(self, batch: Batch, verb: str) -> list[Outcome]:
        by_email, outcomes = self._split(batch.changes)
        if not by_email:
            return outcomes
        create = self.create_contacts and verb == "add"
        ids, errors = self._record_ids(list(by_email), create=create)
        missing: set[str] = set()
        for segment in sorted({c.segment for cs in by_email.values() for c in cs}):
            members = [
                e for e, cs in by_email.items() if any(c.segment == segment for c in cs)
            ]
            record_ids = [ids[e] for e in members if e in ids]
            if record_ids:
                missing |= self._change_members(segment, verb, record_ids)
        stale = [email for email in by_email if email in ids and ids[email] in missing]
        for email in stale:
            # Deleted or merged in HubSpot since its id was cached: look it up
            # by email again next time.
            self.state.pop(f"contact:{email}", None)
            del ids[email]
        for email, changes in by_email.items():
            for change in changes:
                outcomes.append(_list_outcome(change, verb, ids, errors, email, stale))
        return outcomes

    def _change_members(
        self, segment: str, verb: str, record_ids: list[str]
    ) -> set[str]:
        """Add or remove records in the segment's list; return ids HubSpot lacks."""
        create = verb == "add"
        list_id = self._list_id(segment, create)
        response = self._put_members(list_id, verb, record_ids)
        if response is not None and response.status_code == 404:
            # The cached list was deleted in HubSpot: find or make it again.
            self.state.pop(f"list:{self.list_name(segment)}", None)
            list_id = self._list_id(segment, create)
            response = self._put_members(list_id, verb, record_ids)
        if response is None:
            return set()
        if response.status_code == 404:
            msg = f"HubSpot has no list {list_id} for segment {segment!r}."
            raise RetriableSyncError(msg)
        body = _json(response, f"changing the members of list {list_id}")
        return {str(rid) for rid in body.get("recordIdsMissing", [])}

    def _put_members(
        self, list_id: str | None, verb: str, record_ids: list[str]
    ) -> httpx.Response | None:
        if list_id is None:
            return None
        path = f"/crm/v3/lists/{list_id}/memberships/{verb}"
        return self._request("PUT", path, json=record_ids)

    def list_name(self, segment: str) -> str:
        """Return the name of the static list that holds a segment."""
        return f"{self.list_prefix}{segment}"

    def _list_id(self, segment: str, create: bool) -> str | None:
        key = f"list:{self.list_name(segment)}"
        cached = self.state.get(key)
        if cached is not None:
            return cached
        # One batch at a time, or two could each find no list and make one.
        with self._lists_lock:
            cached = self.state.get(key)
            if cached is not None:
                return cached
            list_id = self._find_list(self.list_name(segment), create)
            if list_id is not None:
                self.state[key] = list_id
            return list_id

    def _find_list(self, name: str, create: bool) -> str | None:
        response = self._request(
            "GET", f"/crm/v3/lists/object-type-id/{CONTACTS}/name/{_quote(name)}"
        )
        if response.status_code == 200:
            return str(_json(response, "finding a list")["list"]["listId"])
        _json(response, "finding a list")
        if not create:
            return None
        body = {"name": name, "objectTypeId": CONTACTS, "processingType": "MANUAL"}
        created = self._request("POST", "/crm/v3/lists", json=body)
        return str(_json(created, "creating a list")["list"]["listId"])

    # ------------------------------------------------------------------ tasks

    def _create_tasks(self, batch: Batch) -> list[Outcome]:
        # An update (the contact's fields changed, it is still in the segment)
        # had its task made when it entered: it makes no second one.
        reason = "The task was made when the contact entered the segment."
        outcomes = [Outcome.skipped(c, reason) for c in batch.changes if _is_update(c)]
        entered = [c for c in batch.changes if not _is_update(c)]
        by_email, unknown = self._split(entered)
        outcomes += unknown
        if not by_email:
            return outcomes
        ids, errors = self._record_ids(list(by_email), create=self.create_contacts)
        changes = [c for cs in by_email.values() for c in cs]
        done = self.state.get_many(f"task:{c.id}" for c in changes)
        todo = []
        for email, group in by_email.items():
            for change in group:
                if f"task:{change.id}" in done:
                    outcomes.append(Outcome.skipped(change, "The task exists already."))
                elif email not in ids:
                    reason = errors.get(email, "HubSpot did not return the contact.")
                    outcomes.append(Outcome.failed(change, FailureKind.DATA, reason))
                else:
                    todo.append((change, ids[email]))
        if todo:
            outcomes += self._new_tasks(batch.options, todo)
        return outcomes

    def _new_tasks(
        self, options: Mapping[str, Any], todo: list[tuple[Change, str]]
    ) -> list[Outcome]:
        # Write ahead: a change marked pending but never confirmed was in flight
        # when a run died; look for its task before making another.
        pending = self.state.get_many(f"task-pending:{c.id}" for c, _ in todo)
        outcomes = []
        fresh = []
        for change, record_id in todo:
            if f"task-pending:{change.id}" in pending:
                found = self._find_task(change, record_id)
                if found is not None:
                    self.state[f"task:{change.id}"] = found
                    outcomes.append(Outcome.skipped(change, "The task exists already."))
                    continue
            fresh.append((change, record_id))
        if not fresh:
            return outcomes
        self.state.update({f"task-pending:{c.id}": "1" for c, _ in fresh})
        inputs = [
            _task_input(options, change, record_id) for change, record_id in fresh
        ]
        response = self._request(
            "POST", "/crm/v3/objects/tasks/batch/create", json={"inputs": inputs}
        )
        body = _json(response, "creating tasks")
        made = {}
        for result in body.get("results", []):
            reference = _reference_in(
                result.get("properties", {}).get("hs_task_body", "")
            )
            if reference:
                made[reference] = str(result["id"])
        self.state.update(
            {
                f"task:{c.id}": made[task_reference(c)]
                for c, _ in fresh
                if task_reference(c) in made
            }
        )
        for change, _ in fresh:
            if task_reference(change) in made:
                outcomes.append(
                    Outcome.done(change, remote_id=made[task_reference(change)])
                )
            else:
                reason = _first_error(body) or "HubSpot did not create the task."
                outcomes.append(Outcome.failed(change, FailureKind.DATA, reason))
        return outcomes

    def _find_task(self, change: Change, record_id: str) -> str | None:
        body = {
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": "associations.contact",
                            "operator": "EQ",
                            "value": record_id,
                        },
                        {
                            "propertyName": "hs_task_body",
                            "operator": "CONTAINS_TOKEN",
                            "value": task_reference(change),
                        },
                    ]
                }
            ],
            "properties": ["hs_task_body"],
            "sorts": [],
            "after": "0",
            "limit": 1,
        }
        response = self._request("POST", "/crm/v3/objects/tasks/search", json=body)
        found = _json(response, "searching tasks").get("results", [])
        return str(found[0]["id"]) if found else None

    # ------------------------------------------------------------------ check

    def check(self) -> list[CheckResult]:
        """Verify the token and its scopes by reading, changing nothing."""
        empty_read: Json = {"inputs": [], "properties": [], "propertiesWithHistory": []}
        probe_list = _quote(self.list_name("pqlhub check"))
        probes = [
            (
                "crm.objects.contacts.read",
                "POST",
                "/crm/v3/objects/contacts/batch/read",
                empty_read,
            ),
            (
                "crm.schemas.contacts.read",
                "GET",
                f"/crm/v3/properties/contacts/{self.segments_property}",
                None,
            ),
            (
                "crm.lists.read",
                "GET",
                f"/crm/v3/lists/object-type-id/{CONTACTS}/name/{probe_list}",
                None,
            ),
        ]
        results = []
        for scope, method, path, body in probes:
            try:
                response = self._request(method, path, json=body)
            except FatalSyncError as exc:
                results.append(CheckResult(scope, False, str(exc)))
                if "401" in str(exc):
                    break
                continue
            ok = response.status_code < 500
            results.append(
                CheckResult(scope, ok, f"HubSpot answered HTTP {response.status_code}.")
            )
        return results


# -------------------------------------------------------------------- helpers


def option_value(segment: str) -> str:
    """Return the property option value for a segment name (lower-case, safe)."""
    slug = re.sub(r"[^a-z0-9]+", "_", segment.lower()).strip("_")
    digest = hashlib.sha1(segment.encode()).hexdigest()[:6]
    return f"{slug[:80]}_{digest}"


def task_reference(change: Change) -> str:
    """Return the reference token written into a task's body, unique per change."""
    return f"pqlref{change.id[:20]}"


def _reference_in(body: str) -> str | None:
    found = re.search(r"pqlref[0-9a-f]{20}", body)
    return found.group(0) if found else None


def _segments_after(current: set[str], changes: Iterable[Change]) -> set[str]:
    """Return the segment options a contact holds once the changes are made."""
    values = set(current)
    for change in changes:
        if change.kind == "exit":
            values.discard(option_value(change.segment))
        else:
            values.add(option_value(change.segment))
    return values


def _list_outcome(
    change: Change,
    verb: str,
    ids: Mapping[str, str],
    errors: Mapping[str, str],
    email: str,
    stale: Sequence[str],
) -> Outcome:
    if email in ids:
        return Outcome.done(change, remote_id=ids[email])
    if verb == "remove":
        return Outcome.skipped(change, "The contact is not in HubSpot.")
    if email in stale:
        return Outcome.retry(
            change, "HubSpot no longer has the contact by its cached record id."
        )
    reason = errors.get(email, "HubSpot did not return the contact.")
    return Outcome.failed(change, FailureKind.DATA, reason)


def _option(label: str, value: str, order: int) -> Json:
    return {"label": label, "value": value, "hidden": False, "displayOrder": order}


def _properties(
    fields: Mapping[str, Any], email_field: str, email: str
) -> dict[str, str]:
    properties = {
        name: _text(value) for name, value in fields.items() if value is not None
    }
    properties.pop(email_field, None)
    properties["email"] = email
    return properties


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ";".join(str(item) for item in value)
    return str(value)


def _task_input(options: Mapping[str, Any], change: Change, record_id: str) -> Json:
    values = {
        key: _text(value) for key, value in change.fields.items() if value is not None
    }
    values.setdefault("segment", change.segment)
    subject = _render(options.get("subject", "Follow up: {segment}"), values)
    body = _render(options.get("body", "Entered {segment}."), values)
    due = datetime.now(UTC) + timedelta(days=int(options.get("due_in_days", 1)))
    properties = {
        "hs_task_subject": subject,
        "hs_task_body": f"{body}\n\n(pqlhub ref {task_reference(change)})",
        "hs_timestamp": str(int(due.timestamp() * 1000)),
        "hs_task_status": "NOT_STARTED",
        "hs_task_priority": options.get("priority", "MEDIUM"),
        "hs_task_type": options.get("type", "TODO"),
    }
    owner = options.get("owner_id")
    if "owner_field" in options:
        owner = values.get(options["owner_field"]) or owner
    if owner:
        properties["hubspot_owner_id"] = str(owner)
    association = {
        "to": {"id": record_id},
        "types": [
            {
                "associationCategory": "HUBSPOT_DEFINED",
                "associationTypeId": TASK_TO_CONTACT,
            }
        ],
    }
    return {"properties": properties, "associations": [association]}


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def _render(template: str, values: Mapping[str, str]) -> str:
    """Fill `{field}` placeholders; unknown ones become empty, nothing is evaluated."""
    return string.Formatter().vformat(template, (), _Blank(values))


def _quote(name: str) -> str:
    return httpx.URL(path="/" + name).raw_path.decode()[1:]


def _json(response: httpx.Response, doing: str) -> Json:
    try:
        body = response.json() if response.content else {}
    except ValueError:
        body = {}
    if response.status_code >= 400 and response.status_code != 404:
        status = response.status_code
        msg = f"HubSpot refused {doing}: HTTP {status}: {_message(body, response)}"
        if status in (400, 409, 422):
            raise SkippableSyncError(msg)
        raise FatalSyncError(msg)
    return body if isinstance(body, dict) else {}


def _message(body: Mapping[str, Any], response: httpx.Response) -> str:
    return str(body.get("message") or response.reason_phrase or response.status_code)


def _input_errors(body: Mapping[str, Any], keys: Sequence[str]) -> dict[str, str]:
    """Map a 207's per-input errors to the inputs' keys (emails)."""
    errors: dict[str, str] = {}
    for error in body.get("errors", []) or []:
        message = str(error.get("message", "HubSpot rejected the input."))
        context = error.get("context") or {}
        named = [str(v).lower() for values in context.values() for v in (values or [])]
        for key in keys:
            if key.lower() in named or key.lower() in message.lower():
                errors[key] = message
    return errors


def _is_update(change: Change) -> bool:
    return change.kind == "update"


def _missing_scopes(body: Mapping[str, Any]) -> list[str]:
    """Return the scopes a 403 answer says the token lacks (none if it does not)."""
    found: list[str] = []
    context = body.get("context")
    if isinstance(context, dict):
        found += context.get("requiredScopes") or []
    for error in body.get("errors") or []:
        detail = error.get("context") if isinstance(error, dict) else None
        if isinstance(detail, dict):
            found += detail.get("requiredGranularScopes") or []
    return list(dict.fromkeys(str(scope) for scope in found))


def _first_error(body: Mapping[str, Any]) -> str | None:
    for error in body.get("errors", []) or []:
        return str(error.get("message"))
    return None


def _settle(
    by_email: Mapping[str, list[Change]],
    ids: Mapping[str, str],
    errors: Mapping[str, str],
) -> list[Outcome]:
    outcomes = []
    for email, changes in by_email.items():
        for change in changes:
            if email in errors:
                outcomes.append(Outcome.failed(change, FailureKind.DATA, errors[email]))
            elif email in ids:
                outcomes.append(Outcome.done(change, remote_id=ids[email]))
            else:
                outcomes.append(
                    Outcome.retry(change, "HubSpot did not confirm the contact.")
                )
    return outcomes


def _classify(response: httpx.Response) -> TransientHttpError | None:
    """Read HubSpot's own signals: which limit a 429 is for, locked records."""
    status = response.status_code
    if status == 429:
        policy = _policy(response)
        if policy == "DAILY":
            msg = (
                "HubSpot's daily API limit is reached (429, policy DAILY). It resets "
                "at midnight in the account's time zone; the sync stops until then."
            )
            raise FatalSyncError(msg)
        wait = _retry_after(response)
        return TransientHttpError(
            f"HubSpot's {policy.lower() if policy else 'rate'} limit answered 429.",
            response,
            wait,
            rate_limited=True,
        )
    if status in _TRANSIENT_STATUSES:
        return TransientHttpError(f"HubSpot answered HTTP {status}.", response, 2.0)
    return None


def _policy(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return ""
    return str(body.get("policyName", "")) if isinstance(body, dict) else ""


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("Retry-After")
    if value:
        try:
            return float(value)
        except ValueError:
            pass
    interval = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
    return float(interval) / 1000 if interval and interval.isdigit() else TEN_SECONDS
