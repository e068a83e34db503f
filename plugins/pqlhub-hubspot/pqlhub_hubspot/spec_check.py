"""Check HTTP exchanges against HubSpot's own OpenAPI files, with openapi-core.

The fake HubSpot hands every exchange it serves to a `SpecChecker`, which finds the
operation in the vendor's files (path template and method), validates the request
(security, parameters, body) and the response (declared status, headers, body), and
describes each mismatch in one line.

Quirks of the vendor files that the checker works around:

- Error responses are declared with the media type `*/*`; openapi-core would leave
  such a body as bytes, so `*/*` bodies are read as JSON (HubSpot's always are).
- Operations name only an `oauth2` scheme, which openapi-core cannot check; the
  checker treats it as "a bearer token in `Authorization`", which is what private
  apps send.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema_path import SchemaPath
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.security.exceptions import SecurityProviderError
from openapi_core.security.factories import SecurityProviderFactory
from openapi_core.security.providers import BaseProvider
from openapi_core.templating.paths.exceptions import OperationNotFound, PathError
from openapi_core.templating.paths.finders import APICallPathFinder
from werkzeug.datastructures import Headers, ImmutableMultiDict

__all__ = ["Exchange", "SpecChecker"]

# The servers the files declare; requests are checked as if sent there.
SPEC_HOST = "https://api.hubapi.com"
MAX_DETAIL = 300


@dataclass(frozen=True)
class Exchange:
    """One request the fake received and the response it sent.

    Attributes:
        method: The HTTP method, upper case.
        path: The URL path, without the query string.
        query: The query string's values, by name.
        headers: The request headers.
        body: The raw request body (empty when there was none).
        status: The response's status code.
        response_headers: The response headers.
        response_body: The raw response body.
    """

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    status: int
    response_headers: Mapping[str, str] = field(default_factory=dict)
    response_body: bytes = b""


class _BearerProvider(BaseProvider):
    """Reads a bearer token from `Authorization`, standing in for `oauth2`."""

    def __call__(self, parameters: RequestParameters) -> Any:
        kind, _, token = str(parameters.header.get("Authorization", "")).partition(" ")
        if kind.lower() != "bearer" or not token:
            raise SecurityProviderError("No bearer token in the Authorization header.")
        return token


def _security_providers() -> SecurityProviderFactory:
    """Return openapi-core's providers, with `oauth2` read as a bearer token."""
    factory = SecurityProviderFactory()
    factory.PROVIDERS = {**factory.PROVIDERS, "oauth2": _BearerProvider}
    return factory


class _Request:
    """An `Exchange`'s request, in the shape openapi-core reads."""

    def __init__(self, exchange: Exchange) -> None:
        self.host_url = SPEC_HOST
        self.path = exchange.path
        self.method = exchange.method.lower()
        self.body: bytes | None = exchange.body or None
        self.content_type = _content_type(exchange.headers)
        pairs = [
            (name, value) for name, values in exchange.query.items() for value in values
        ]
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(pairs), header=Headers(dict(exchange.headers))
        )


class _Response:
    """An `Exchange`'s response, in the shape openapi-core reads."""

    def __init__(self, exchange: Exchange) -> None:
        self.status_code = exchange.status
        self.headers = Headers(dict(exchange.response_headers))
        self.content_type = _content_type(exchange.response_headers)
        self.data: bytes | None = exchange.response_body or None


class SpecChecker:
    """Validates exchanges against every OpenAPI file in a folder.

    Args:
        specs_dir: The folder holding the vendor's OpenAPI files (`*.json`).

    Raises:
        FileNotFoundError: When the folder holds no `*.json` file.
    """

    def __init__(self, specs_dir: Path) -> None:
        self.specs_dir = specs_dir
        self._apps = _load_specs(specs_dir.resolve())
        # openapi-core caches as it goes; one check at a time keeps that safe.
        self._lock = threading.Lock()

    def check(self, exchange: Exchange) -> list[str]:
        """Return one line per mismatch between the exchange and the files.

        Each line starts with the method and path, then says whether the request
        or the response is at fault, then gives openapi-core's finding.
        """
        where = f"{exchange.method} {exchange.path}"
        with self._lock:
            app = self._find(exchange)
            if isinstance(app, str):
                return [f"{where}: request: {app}"]
            request, response = _Request(exchange), _Response(exchange)
            request_errors = list(app.request_validator.iter_errors(request))
            response_errors = list(
                app.response_validator.iter_errors(request, response)
            )
        return [f"{where}: request: {_describe(exc)}" for exc in request_errors] + [
            f"{where}: response {exchange.status}: {_describe(exc)}"
            for exc in response_errors
        ]

    def _find(self, exchange: Exchange) -> OpenAPI | str:
        """Return the app whose file declares the operation, or why none does."""
        url = SPEC_HOST + exchange.path
        method_missing = False
        for app in self._apps:
            try:
                APICallPathFinder(app.spec).find(exchange.method.lower(), url)
            except OperationNotFound:
                method_missing = True
            except PathError:
                continue
            else:
                return app
        if method_missing:
            return (
                f"the OpenAPI files declare this path, but not for {exchange.method}."
            )
        return (
            f"no operation in the OpenAPI files in {self.specs_dir} matches this path."
        )


@functools.cache
def _load_specs(specs_dir: Path) -> tuple[OpenAPI, ...]:
    """Load each OpenAPI file once per process, whoever asks."""
    files = sorted(specs_dir.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"No OpenAPI file (*.json) is in {specs_dir}.")
    # The vendor's files are taken as valid: checking them costs over a second.
    config = Config(
        spec_validator_cls=None,
        security_provider_factory=_security_providers(),
        extra_media_type_deserializers={"*/*": _read_json},
    )
    return tuple(_load_spec(path, config) for path in files)


def _load_spec(path: Path, config: Config) -> OpenAPI:
    data = json.loads(path.read_text(encoding="utf-8"))
    return OpenAPI(SchemaPath.from_dict(data, base_uri=path.as_uri()), config=config)


def _read_json(value: bytes, **parameters: str) -> Any:
    return json.loads(value)


def _content_type(headers: Mapping[str, str]) -> str:
    for name, value in headers.items():
        if name.lower() == "content-type":
            return value.lower()
    return ""


def _describe(exc: Exception) -> str:
    """Say what openapi-core found, with the JSON path of each schema error."""
    cause = exc.__cause__
    schema_errors: Iterable[Any] = getattr(cause, "schema_errors", ()) or ()
    details = [f"{error.json_path}: {_clip(error.message)}" for error in schema_errors]
    if details:
        return f"{type(exc).__name__}: {'; '.join(details)}"
    text = str(exc) or repr(exc)
    if cause is not None and str(cause) not in text:
        text = f"{text}: {cause}"
    return _clip(text)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 3] + "..."
