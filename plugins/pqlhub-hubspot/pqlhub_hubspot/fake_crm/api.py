"""What the fake's endpoints share: calls, replies, HubSpot's error bodies, parsing.

An endpoint takes a `Call` and returns a `Reply`, or raises `ApiError`, which
becomes HubSpot's generic error body. The helpers below pick a request body apart
and raise a 400 `VALIDATION_ERROR` that names the faulty part.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

JsonObject = dict[str, Any]

MAX_BATCH = 100
BODY = "The request body"


def now_iso() -> str:
    """Return the current UTC time as HubSpot writes it (`...T12:00:00.000Z`)."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


@dataclass
class Call:
    """One request to a HubSpot endpoint, as the endpoint sees it.

    Attributes:
        method: The HTTP method, upper case.
        path: The URL path.
        query: The query string's values, by name.
        headers: The request headers, by lower-case name.
        body: The raw body.
        base_url: Where the fake serves, for `Location` headers and paging links.
        params: The values of the path template's parameters.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    base_url: str
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """Return the body parsed as JSON.

        Raises:
            ApiError: When the body is empty or not JSON (400).
        """
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise bad_request(f"Invalid input JSON: {exc}.") from exc

    def arg(self, name: str) -> str | None:
        """Return the first value of a query parameter, if it was sent."""
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Reply:
    """An answer: status, JSON body (None for none) and extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.status = int(self.status)

    def encode(self) -> bytes:
        """Return the body as JSON bytes (empty when there is none)."""
        if self.body is None:
            return b""
        return json.dumps(self.body, separators=(",", ":")).encode()


# ------------------------------------------------------------------------ errors


def error_body(
    category: str,
    message: str,
    *,
    context: Mapping[str, list[str]] | None = None,
    errors: Sequence[JsonObject] = (),
    links: Mapping[str, str] | None = None,
) -> JsonObject:
    """Return HubSpot's generic error body (the `Error` schema, plus `status`)."""
    body: JsonObject = {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
    }
    if context:
        body["context"] = dict(context)
    if errors:
        body["errors"] = list(errors)
    if links:
        body["links"] = dict(links)
    return body


def standard_error(
    category: str, message: str, context: Mapping[str, list[str]]
) -> JsonObject:
    """Return one entry of a 207 answer's `errors` (the `StandardError` schema)."""
    # The schema types `subCategory` as an object, so it is left out.
    return {
        "status": "error",
        "category": category,
        "message": message,
        "context": dict(context),
        "errors": [],
        "links": {},
    }


class ApiError(Exception):
    """A HubSpot error answer: raise it from an endpoint to send it.

    Args:
        status: The HTTP status.
        category: HubSpot's error category, such as `VALIDATION_ERROR`.
        message: The message HubSpot would send.
        context: Extra detail, each key naming a list of strings.
        errors: `ErrorDetail` objects to send along.
        links: Named links to documentation.
    """

    def __init__(
        self,
        status: int,
        category: str,
        message: str,
        *,
        context: Mapping[str, list[str]] | None = None,
        errors: Sequence[JsonObject] = (),
        links: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(
            category, message, context=context, errors=errors, links=links
        )

    def reply(self) -> Reply:
        """Return the error as an answer, with a fresh correlation id."""
        return Reply(self.status, {**self.body, "correlationId": str(uuid.uuid4())})


def bad_request(message: str, **context: list[str]) -> ApiError:
    """Return a 400 `VALIDATION_ERROR`, the answer to a malformed request."""
    return ApiError(400, "VALIDATION_ERROR", message, context=context or None)


def not_found(message: str) -> ApiError:
    """Return a 404 `OBJECT_NOT_FOUND`."""
    return ApiError(404, "OBJECT_NOT_FOUND", message)


def status_error(status: int) -> ApiError:
    """Return an error with the given status and a category that suits it."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    category = "INTERNAL_ERROR" if status >= 500 else "VALIDATION_ERROR"
    return ApiError(status, category, f"{phrase} (status {status}).")


def problem(name: str, code: str, message: str) -> JsonObject:
    """Return one entry of a `Property values were not valid` message."""
    return {"isValid": False, "message": message, "error": code, "name": name}


def invalid_values(problems: Sequence[JsonObject]) -> ApiError:
    """Return the 400 HubSpot sends when some property values are not valid."""
    detail = json.dumps(list(problems), separators=(",", ":"))
    return bad_request(f"Property values were not valid: {detail}")


# ----------------------------------------------------------------------- answers


def batch_reply(
    results: list[JsonObject], errors: list[JsonObject], started: str, status: int
) -> Reply:
    """Return a batch answer: `status` when all went well, else 207 with errors."""
    body: JsonObject = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": started,
        "completedAt": now_iso(),
    }
    if not errors:
        return Reply(status, body)
    body.update(numErrors=len(errors), errors=errors)
    return Reply(HTTPStatus.MULTI_STATUS, body)


# ------------------------------------------------------------------ request parts


def object_of(raw: Any, where: str) -> JsonObject:
    """Return `raw` if it is a JSON object; `where` names it in the error."""
    if not isinstance(raw, dict):
        raise bad_request(f"{where} must be a JSON object.")
    return raw


def batch_inputs(raw: Any, limit: int = MAX_BATCH) -> list[Any]:
    """Return a batch body's `inputs`, refusing more than `limit` of them."""
    inputs = object_of(raw, BODY).get("inputs")
    if not isinstance(inputs, list):
        raise bad_request("The request body must have an inputs array.")
    if len(inputs) > limit:
        message = f"The batch has {len(inputs)} inputs; at most {limit} are allowed."
        raise bad_request(message)
    return inputs


def text_of(item: Mapping[str, Any], key: str, where: str) -> str:
    """Return `item[key]`, which must be a non-empty string."""
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise bad_request(f"{where} must have {key} as a non-empty string.")
    return value


def names_of(raw: Any, where: str) -> list[str]:
    """Return a list of property names (none when `raw` is None)."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        raise bad_request(f"{where} must be an array of property names.")
    return raw


def as_text(value: Any) -> str:
    """Return a property value as HubSpot keeps it: a string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def property_values(raw: Any, where: str) -> dict[str, str]:
    """Return an input's `properties`, every value made a string."""
    values = object_of(raw, f"{where}.properties")
    return {name: as_text(value) for name, value in values.items()}


def upsert_input(raw: Any, where: str) -> tuple[str | None, str, dict[str, str]]:
    """Return an upsert input's id property, id and property values."""
    item = object_of(raw, where)
    id_property = item.get("idProperty")
    if id_property is not None and not isinstance(id_property, str):
        raise bad_request(f"{where}.idProperty must be a property name.")
    values = property_values(item.get("properties"), where)
    return id_property, text_of(item, "id", where), values


def int_arg(call: Call, name: str, default: int) -> int:
    """Return a whole-number query parameter."""
    value = call.arg(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise bad_request(f"{name} must be a whole number, not {value!r}.") from exc


def cursor(value: str, name: str) -> int:
    """Return a paging cursor the fake handed out earlier (a number)."""
    if not value.isdigit():
        raise bad_request(
            f"{name} must be a cursor from an earlier page, not {value!r}."
        )
    return int(value)


def unique(values: Iterable[str]) -> list[str]:
    """Return the values without repeats, in their first order."""
    return list(dict.fromkeys(values))


def check_unique(keys: Sequence[str]) -> None:
    """Refuse a batch that names the same record twice, as HubSpot does."""
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise bad_request(f"Duplicate IDs found in batch input: {duplicates}.")
