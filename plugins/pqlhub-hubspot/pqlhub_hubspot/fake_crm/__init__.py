"""The fake HubSpot's CRM: records in memory and the endpoints that serve them.

`store.Crm` holds the records; `contacts`, `properties`, `lists` and `tasks` hold
the endpoints, each a function of the `Crm` and a `Call` that returns a `Reply` or
raises `ApiError`; `routes.ROUTES` maps methods and paths to them, with the
scopes each needs. Auth, rate limits, faults and HTTP are `pqlhub_hubspot.fake`'s.

Where HubSpot's OpenAPI files say nothing, the fake follows HubSpot's observed
behaviour; each module's docstring says where it guesses.
"""

from __future__ import annotations

from pqlhub_hubspot.fake_crm.api import (
    ApiError,
    Call,
    JsonObject,
    Reply,
    status_error,
)
from pqlhub_hubspot.fake_crm.routes import ROUTES, Route, find_route
from pqlhub_hubspot.fake_crm.store import Crm

__all__ = [
    "ROUTES",
    "ApiError",
    "Call",
    "Crm",
    "JsonObject",
    "Reply",
    "Route",
    "find_route",
    "status_error",
]
