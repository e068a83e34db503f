"""Loading pqlhub's JSON Schemas and turning validation errors into recipe problems."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Final

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from pqlhub.errors import Problem
from pqlhub.redaction import is_sensitive

__all__ = ["SCHEMA_BASE", "format_path", "load_schema", "validate"]

SCHEMA_BASE: Final = "https://pqlhub.dev/schemas/"
SECRET_MARKER: Final = "x-pqlhub-secret"
_SCHEMA_FILES: Final = ("defs.schema.json", "recipe.schema.json")


def _schema_dir() -> Path:
    packaged = Path(str(files("pqlhub"))) / "schemas"
    if packaged.is_dir():
        return packaged
    # A source checkout or an editable install: the schemas live at the top level.
    return Path(__file__).resolve().parent.parent / "schemas"


@cache
def load_schema(name: str) -> Mapping[str, Any]:
    """Return one of pqlhub's schemas (`recipe.schema.json`, `defs.schema.json`)."""
    with (_schema_dir() / name).open(encoding="utf-8") as handle:
        schema: Mapping[str, Any] = json.load(handle)
    return schema


@cache
def _registry() -> Registry[Any]:
    resources = [
        (SCHEMA_BASE + name, Resource.from_contents(load_schema(name)))
        for name in _SCHEMA_FILES
    ]
    return Registry().with_resources(resources)


def validate(
    instance: Any, schema: Mapping[str, Any], prefix: Iterable[str | int] = ()
) -> list[Problem]:
    """Validate `instance` and return every problem, with key paths under `prefix`.

    Plugins' schemas may refer to the shared definitions as
    `https://pqlhub.dev/schemas/defs.schema.json#/$defs/secret`.
    """
    validator = Draft202012Validator(schema, registry=_registry())
    base = list(prefix)
    return [_problem(error, base) for error in _leaves(validator.iter_errors(instance))]


def _leaves(errors: Iterable[ValidationError]) -> Iterator[ValidationError]:
    # A failed oneOf/anyOf carries the errors of each branch; the most relevant
    # branch says more than "is not valid under any of the given schemas".
    for error in errors:
        if error.validator in ("oneOf", "anyOf") and error.context:
            yield _best_branch(error)
        else:
            yield error


def _best_branch(error: ValidationError) -> ValidationError:
    context = sorted(error.context or (), key=lambda e: (-len(e.path), e.message))
    deepest = context[0]
    return deepest if len(deepest.path) > len(error.path) else error


def format_path(parts: Iterable[str | int]) -> str:
    """Return a key path in recipe form: `sources.users.path`, `syncs[0].name`."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _problem(error: ValidationError, prefix: list[str | int]) -> Problem:
    path = [*prefix, *error.absolute_path]
    validator = error.validator
    if _is_secret(error) or any(
        isinstance(part, str) and is_sensitive(part) for part in path
    ):
        message = (
            'must be a secret reference, { env = "NAME" } or { file = "path" }; '
            "a secret's value is never written in a recipe."
        )
    elif validator == "required":
        missing = _quoted_first(error.message)
        path.append(missing)
        message = "is required but missing."
    elif validator == "additionalProperties":
        return _unknown_keys(error, path)
    elif validator == "type":
        message = (
            f"expected {_a(error.validator_value)}, found {_kind(error.instance)}."
        )
    elif validator == "enum":
        options = ", ".join(repr(option) for option in error.validator_value)
        message = f"expected one of {options}, found {_show(error.instance)}."
    elif validator == "pattern":
        described = error.schema.get("description")
        message = f"{_show(error.instance)} is not valid" + (
            f": {described[0].lower()}{described[1:]}" if described else "."
        )
    else:
        message = error.message.rstrip(".") + "."
    return Problem(format_path(path), message)


def _unknown_keys(error: ValidationError, path: list[str | int]) -> Problem:
    allowed = sorted(error.schema.get("properties", {}))
    extra = sorted(set(error.instance) - set(allowed))
    hint = f" Allowed keys: {', '.join(allowed)}." if allowed else ""
    if len(extra) == 1:
        return Problem(format_path([*path, extra[0]]), f"unknown key.{hint}")
    keys = ", ".join(repr(key) for key in extra)
    return Problem(format_path(path), f"unknown keys {keys}.{hint}")


def _is_secret(error: ValidationError) -> bool:
    current: ValidationError | None = error
    while current is not None:
        if isinstance(current.schema, Mapping) and current.schema.get(SECRET_MARKER):
            return True
        current = current.parent
    return False


def _quoted_first(message: str) -> str:
    start = message.find("'")
    end = message.find("'", start + 1)
    return message[start + 1 : end] if start >= 0 and end > start else message


_TYPE_NAMES: Final = {
    "object": "a table",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "nothing",
}


def _a(expected: Any) -> str:
    if isinstance(expected, list):
        return " or ".join(_TYPE_NAMES.get(item, str(item)) for item in expected)
    return _TYPE_NAMES.get(expected, str(expected))


def _kind(instance: Any) -> str:
    if isinstance(instance, bool):
        kind = "boolean"
    elif isinstance(instance, int):
        kind = "integer"
    elif isinstance(instance, float):
        kind = "number"
    elif isinstance(instance, str):
        kind = "string"
    elif isinstance(instance, list):
        kind = "array"
    elif isinstance(instance, dict):
        kind = "object"
    else:
        kind = type(instance).__name__
    shown = _show(instance)
    described = _TYPE_NAMES.get(kind, kind)
    return f"{described} {shown}" if kind not in ("object", "array") else described


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
