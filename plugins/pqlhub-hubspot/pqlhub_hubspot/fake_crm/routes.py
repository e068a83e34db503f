"""The endpoints the fake serves: method, path template, handler and scopes.

Scopes are as HubSpot's files give them: each route lists alternatives, each a set
of scopes that together allow the call; a refusal names the first alternative's.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from pqlhub_hubspot.fake_crm import contacts, lists, properties, tasks
from pqlhub_hubspot.fake_crm.api import Call, Reply
from pqlhub_hubspot.fake_crm.store import Crm

Handler = Callable[[Crm, Call], Reply]
Scopes = tuple[tuple[str, ...], ...]

CONTACTS_READ: Scopes = (("crm.objects.contacts.read",),)
CONTACTS_WRITE: Scopes = (("crm.objects.contacts.write",),)
SCHEMAS_READ: Scopes = (
    ("crm.schemas.contacts.read",),
    ("crm.objects.contacts.read",),
    ("crm.objects.contacts.write",),
)
SCHEMAS_WRITE: Scopes = (("crm.schemas.contacts.write",),)
LISTS_READ: Scopes = (("crm.lists.read",),)
LISTS_CREATE: Scopes = (("crm.lists.write",), ("cms.membership.access_groups.write",))
LISTS_WRITE: Scopes = (
    ("crm.lists.read", "crm.lists.write"),
    ("cms.membership.access_groups.write", "crm.lists.read"),
)


@dataclass(frozen=True)
class Route:
    """One endpoint.

    Attributes:
        method: The HTTP method.
        template: The path, with `{name}` for each parameter.
        handler: The function that answers.
        scopes: Alternatives, each a set of scopes that together allow the call.
        rate_limited: False for endpoints outside the ten-second window, which
            send no rate-limit headers either (HubSpot's search endpoints).
    """

    method: str
    template: str
    handler: Handler
    scopes: Scopes
    rate_limited: bool = True

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Return the path parameters (URL-decoded) when the call is for this route."""
        found = _pattern(self.template).fullmatch(path)
        if method != self.method or found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}


@functools.cache
def _pattern(template: str) -> re.Pattern[str]:
    """Compile `/a/{name}/b` to a pattern with one group per parameter."""
    return re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)))


CONTACTS = "/crm/v3/objects/contacts"
PROPERTY = "/crm/v3/properties/{objectType}/{propertyName}"
LIST = "/crm/v3/lists/{listId}"
TASKS = "/crm/v3/objects/tasks"

ROUTES: tuple[Route, ...] = (
    Route("POST", f"{CONTACTS}/batch/upsert", contacts.upsert_contacts, CONTACTS_WRITE),
    Route("POST", f"{CONTACTS}/batch/read", contacts.read_contacts, CONTACTS_READ),
    Route("POST", f"{CONTACTS}/batch/create", contacts.create_contacts, CONTACTS_WRITE),
    Route("GET", PROPERTY, properties.get_property, SCHEMAS_READ),
    Route("PATCH", PROPERTY, properties.update_property, SCHEMAS_WRITE),
    Route(
        "POST",
        "/crm/v3/properties/{objectType}",
        properties.create_property,
        SCHEMAS_WRITE,
    ),
    Route("POST", "/crm/v3/lists", lists.create_list, LISTS_CREATE),
    Route(
        "GET",
        "/crm/v3/lists/object-type-id/{objectTypeId}/name/{listName}",
        lists.get_list_by_name,
        LISTS_READ,
    ),
    Route("GET", LIST, lists.get_list, LISTS_READ),
    Route("GET", f"{LIST}/memberships", lists.get_members, LISTS_READ),
    Route("PUT", f"{LIST}/memberships/add", lists.add_members, LISTS_WRITE),
    Route("PUT", f"{LIST}/memberships/remove", lists.remove_members, LISTS_WRITE),
    Route(
        "PUT",
        f"{LIST}/memberships/add-and-remove",
        lists.add_and_remove_members,
        LISTS_WRITE,
    ),
    Route("POST", TASKS, tasks.create_task, CONTACTS_WRITE),
    Route("POST", f"{TASKS}/batch/create", tasks.create_tasks, CONTACTS_WRITE),
    Route("POST", f"{TASKS}/batch/upsert", tasks.upsert_tasks, CONTACTS_WRITE),
    Route(
        "POST", f"{TASKS}/search", tasks.search_tasks, CONTACTS_READ, rate_limited=False
    ),
)


def find_route(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """Return the route for a call and its path parameters, or None."""
    for route in ROUTES:
        params = route.match(method, path)
        if params is not None:
            return route, params
    return None
