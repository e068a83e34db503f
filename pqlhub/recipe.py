"""Reading a recipe: TOML in, a validated `Recipe` with resolved secrets out.

Loading checks everything it can before anything runs, and reports every problem
at once: the recipe against `schemas/recipe.schema.json`, each source and
destination block against its plugin's own schema, and each secret reference.
Secret references (`{ env = "NAME" }`, `{ file = "path" }`) become `Secret`
values; their contents never appear in a message.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from pqlhub.connectors import Destination, Entity, Source
from pqlhub.errors import (
    Problem,
    RecipeError,
    RecipeInvalidError,
    RecipeSyntaxError,
    UnknownPluginError,
)
from pqlhub.plugins import Plugins
from pqlhub.redaction import Secret
from pqlhub.schemas import format_path, load_schema, validate

__all__ = [
    "DestinationBlock",
    "Recipe",
    "SourceBlock",
    "load_recipe",
    "recipe_from_dict",
]

DEFAULT_MIN_SIZE: Final = 500
DEFAULT_MAX_DIMENSION_VALUES: Final = 50

_SOURCE_CORE_KEYS: Final = frozenset({"plugin", "entity", "key", "on_error", "enabled"})
_DESTINATION_CORE_KEYS: Final = frozenset({"plugin", "enabled"})
_TOML_POSITION: Final = re.compile(r"\(at line (\d+), column (\d+)\)")


@dataclass(frozen=True)
class SourceBlock:
    """One `[sources.*]` block, validated.

    Attributes:
        name: The block's name.
        plugin: The source plugin's name.
        entity: What the records describe.
        key: The identifying field of contacts and accounts.
        on_error: What a malformed record does: `fail` or `skip`.
        config: The plugin's own keys, secrets resolved.
        connector: The source class that reads the block.
    """

    name: str
    plugin: str
    entity: Entity
    key: str | None
    on_error: Literal["fail", "skip"]
    config: Mapping[str, Any]
    connector: type[Source]


@dataclass(frozen=True)
class DestinationBlock:
    """One `[destinations.*]` block, validated.

    Attributes:
        name: The block's name.
        plugin: The destination plugin's name.
        config: The plugin's own keys, secrets resolved.
        connector: The destination class that serves the block.
    """

    name: str
    plugin: str
    config: Mapping[str, Any]
    connector: type[Destination]


@dataclass(frozen=True)
class Recipe:
    """A validated recipe.

    Attributes:
        name: The recipe's name.
        origin: The recipe file, or a description when built from a dict.
        base_dir: The folder relative paths in the recipe are relative to.
        ledger_path: The ledger's SQLite file.
        as_of: The fixed evaluation time the recipe asks for, if any.
        min_size: The default minimum segment size.
        max_dimension_values: The default limit on a dimension's distinct values.
        sources: The enabled source blocks by name.
        destinations: The enabled destination blocks by name.
        data: The whole recipe as plain values, for the stages that compile
            their own blocks (traits, segments, syncs). Secret references in it
            stay unresolved; use the blocks' `config` for resolved values.
        plugins: The plugins the recipe was checked against.
    """

    name: str
    origin: str
    base_dir: Path
    ledger_path: Path
    as_of: datetime | None
    min_size: int
    max_dimension_values: int
    sources: Mapping[str, SourceBlock]
    destinations: Mapping[str, DestinationBlock]
    data: Mapping[str, Any]
    plugins: Plugins = field(repr=False)

    def sources_of(self, entity: Entity) -> list[SourceBlock]:
        """Return the source blocks that read `entity`, in recipe order."""
        return [block for block in self.sources.values() if block.entity == entity]

    @property
    def rejects_dir(self) -> Path:
        """The folder beside the ledger where skipped records are kept."""
        return self.ledger_path.with_name(self.ledger_path.stem + ".rejects")


def load_recipe(
    path: str | os.PathLike[str],
    plugins: Plugins | None = None,
    env: Mapping[str, str] | None = None,
) -> Recipe:
    """Read, validate and resolve a recipe file.

    Args:
        path: The TOML file.
        plugins: The plugins to check the recipe against; discovered when None.
        env: Where `{ env = "..." }` references are looked up; `os.environ`
            when None.

    Raises:
        RecipeSyntaxError: When the file is not valid TOML.
        RecipeInvalidError: When the recipe has problems; all are listed.
        RecipeError: When the file cannot be read.
    """
    recipe_path = Path(path)
    try:
        text = recipe_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = f"Recipe file {str(recipe_path)!r} does not exist."
        raise RecipeError(msg) from None
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"Recipe file {str(recipe_path)!r} cannot be read: {exc}."
        raise RecipeError(msg) from exc
    data = parse_toml(text, str(recipe_path))
    return recipe_from_dict(
        data,
        plugins=plugins,
        base_dir=recipe_path.resolve().parent,
        env=env,
        origin=str(recipe_path),
    )


def parse_toml(text: str, origin: str) -> dict[str, Any]:
    """Parse recipe TOML, turning a syntax error into one naming line and column."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        reason = str(exc)
        found = _TOML_POSITION.search(reason)
        if found:
            line, column = int(found.group(1)), int(found.group(2))
            reason = reason[: found.start()].strip()
        else:
            line = text.count("\n") + 1
            column = len(text.rsplit("\n", 1)[-1]) + 1
            reason = reason.replace("(at end of document)", "").strip()
        raise RecipeSyntaxError(origin, line, column, reason) from None


def recipe_from_dict(
    data: Mapping[str, Any],
    plugins: Plugins | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    origin: str = "<dict>",
) -> Recipe:
    """Validate and resolve a recipe given as plain values.

    Args:
        data: The recipe, as TOML would parse it.
        plugins: The plugins to check the recipe against; discovered when None.
        base_dir: The folder relative paths are relative to; the working folder
            when None.
        env: Where `{ env = "..." }` references are looked up.
        origin: How messages name the recipe.

    Raises:
        RecipeInvalidError: When the recipe has problems; all are listed.
    """
    plugins = plugins if plugins is not None else Plugins.discover()
    folder = Path(base_dir) if base_dir is not None else Path.cwd()
    resolver = _SecretResolver(env if env is not None else os.environ, folder)

    problems = validate(data, load_schema("recipe.schema.json"))
    # A block that fails the core schema is not handed to its plugin's schema:
    # that would only repeat the fault. Every other block is checked.
    faulty = {problem.path for problem in problems}
    sources = _source_blocks(
        _sound(data, "sources", faulty), plugins, resolver, problems
    )
    destinations = _destination_blocks(
        _sound(data, "destinations", faulty), plugins, resolver, problems
    )
    problems.extend(resolver.problems)
    as_of = _as_of(data.get("recipe", {}).get("as_of"), problems)
    if problems:
        raise RecipeInvalidError(origin, _ordered(problems))

    settings = data["recipe"]
    name = settings["name"]
    ledger = folder / settings.get("ledger", f".pqlhub/{name}.db")
    return Recipe(
        name=name,
        origin=origin,
        base_dir=folder,
        ledger_path=ledger,
        as_of=as_of,
        min_size=settings.get("min_size", DEFAULT_MIN_SIZE),
        max_dimension_values=settings.get(
            "max_dimension_values", DEFAULT_MAX_DIMENSION_VALUES
        ),
        sources=sources,
        destinations=destinations,
        data=copy.deepcopy(dict(data)),
        plugins=plugins,
    )


def _sound(
    data: Mapping[str, Any], section: str, faulty: set[str]
) -> dict[str, Mapping[str, Any]]:
    blocks = data.get(section)
    if not isinstance(blocks, Mapping):
        return {}
    return {
        name: block
        for name, block in blocks.items()
        if not any(
            path == f"{section}.{name}" or path.startswith(f"{section}.{name}.")
            for path in faulty
        )
    }


def _connector_config(
    section: str,
    name: str,
    block: Mapping[str, Any],
    lookup: Callable[[str], Any],
    resolver: _SecretResolver,
    problems: list[Problem],
) -> tuple[Any, dict[str, Any]] | None:
    """Find a block's connector and check the block's own keys against it.

    Returns:
        The connector class and the block's config (the plugin's keys, secrets
        resolved), or None when a problem was recorded instead.
    """
    path = (section, name)
    try:
        connector = lookup(block["plugin"])
    except UnknownPluginError as exc:
        problems.append(Problem(format_path((*path, "plugin")), str(exc)))
        return None
    core = _SOURCE_CORE_KEYS if section == "sources" else _DESTINATION_CORE_KEYS
    config = {k: v for k, v in block.items() if k not in core}
    faults = validate(config, connector.config_schema, path)
    problems.extend(faults)
    if faults:
        return None
    return connector, resolver.resolve_tree(config, path)


def _source_blocks(
    blocks: Mapping[str, Mapping[str, Any]],
    plugins: Plugins,
    resolver: _SecretResolver,
    problems: list[Problem],
) -> dict[str, SourceBlock]:
    found: dict[str, SourceBlock] = {}
    for name, block in blocks.items():
        if not block.get("enabled", True):
            continue
        checked = _connector_config(
            "sources", name, block, plugins.source, resolver, problems
        )
        if checked is None:
            continue
        connector, config = checked
        if block["entity"] not in connector.capabilities.entities:
            entities = ", ".join(sorted(connector.capabilities.entities))
            problems.append(
                Problem(
                    format_path(("sources", name, "entity")),
                    f"The {block['plugin']!r} source reads {entities}, "
                    f"not {block['entity']!r}.",
                )
            )
            continue
        found[name] = SourceBlock(
            name=name,
            plugin=block["plugin"],
            entity=block["entity"],
            key=block.get("key"),
            on_error=block.get("on_error", "fail"),
            config=config,
            connector=connector,
        )
    return found


def _destination_blocks(
    blocks: Mapping[str, Mapping[str, Any]],
    plugins: Plugins,
    resolver: _SecretResolver,
    problems: list[Problem],
) -> dict[str, DestinationBlock]:
    found: dict[str, DestinationBlock] = {}
    for name, block in blocks.items():
        if not block.get("enabled", True):
            continue
        checked = _connector_config(
            "destinations", name, block, plugins.destination, resolver, problems
        )
        if checked is not None:
            connector, config = checked
            found[name] = DestinationBlock(name, block["plugin"], config, connector)
    return found


class _SecretResolver:
    """Turns secret references into `Secret` values, collecting what fails."""

    def __init__(self, env: Mapping[str, str], base_dir: Path) -> None:
        self.env = env
        self.base_dir = base_dir
        self.problems: list[Problem] = []

    def resolve_tree(self, value: Any, path: tuple[str | int, ...] = ()) -> Any:
        if isinstance(value, Mapping):
            if _is_reference(value):
                return self._resolve(value, path)
            return {k: self.resolve_tree(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve_tree(v, (*path, i)) for i, v in enumerate(value)]
        return value

    def _resolve(
        self, reference: Mapping[str, str], path: tuple[str | int, ...]
    ) -> Any:
        where = format_path(path)
        if "env" in reference:
            name = reference["env"]
            value = self.env.get(name)
            if value is None:
                self._problem(where, f"The environment variable {name!r} is not set.")
                return Secret("", f"env:{name}")
            return Secret(value, f"env:{name}")
        file = self.base_dir / Path(reference["file"]).expanduser()
        try:
            return Secret(file.read_text(encoding="utf-8").strip(), f"file:{file}")
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            self._problem(
                where, f"The secret file {str(file)!r} cannot be read: {reason}."
            )
            return Secret("", f"file:{file}")

    def _problem(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message))


def _is_reference(value: Mapping[str, Any]) -> bool:
    return (
        len(value) == 1
        and next(iter(value)) in ("env", "file")
        and isinstance(next(iter(value.values())), str)
    )


def _as_of(text: Any, problems: list[Problem]) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        problems.append(
            Problem(
                "recipe.as_of",
                f"{text!r} is not an ISO 8601 time; write it like "
                "'2026-12-01T00:00:00Z'.",
            )
        )
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _ordered(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda problem: problem.path)
