"""Finding plugins, loading each on its own, and looking up their connectors.

This is the one place that builds pluggy's manager. Installed plugins come from the
`pqlhub` entry-point group; built-in connectors register through the same hooks. A
plugin that fails to import, or returns something that is not a connector, is
recorded with the reason and left out; every other plugin keeps working.

The environment variable `PQLHUB_PLUGINS`, when set, is a comma-separated allow-list
of entry-point names to load (empty: load none); built-ins always load.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Final, TypeVar

import pluggy
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from pqlhub import hookspecs
from pqlhub.connectors import Destination, RuleType, Source
from pqlhub.errors import PluginError, UnknownPluginError

__all__ = ["BUILTIN_PLUGINS", "PluginInfo", "Plugins"]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP: Final = "pqlhub"
ALLOW_LIST_VARIABLE: Final = "PQLHUB_PLUGINS"

BUILTIN_PLUGINS: Final[tuple[str, ...]] = ("pqlhub.rules", "pqlhub.destinations")
"""Modules of the core that register connectors through the hooks."""

_KINDS: Final = (
    ("source", "pqlhub_source_types", Source),
    ("rule", "pqlhub_rule_types", RuleType),
    ("destination", "pqlhub_destination_types", Destination),
)

ConnectorT = TypeVar("ConnectorT", type[Source], type[RuleType], type[Destination])


@dataclass(frozen=True)
class PluginInfo:
    """What `pqlhub plugins` shows about one plugin.

    Attributes:
        name: The entry-point name, or the module name of a built-in.
        module: The module the plugin lives in.
        distribution: The installed distribution that provides it, if any.
        version: That distribution's version (pqlhub's own for built-ins).
        builtin: Whether it ships with the core.
        sources: Names of the sources it registers.
        rules: Names of the rule types it registers.
        destinations: Names of the destinations it registers.
        error: Why it did not load, or None when it did.
    """

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    sources: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    destinations: tuple[str, ...] = ()
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the info as plain JSON-ready values."""
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "sources": list(self.sources),
            "rules": list(self.rules),
            "destinations": list(self.destinations),
            "error": self.error,
        }


@dataclass
class _Registry:
    sources: dict[str, type[Source]] = field(default_factory=dict)
    rules: dict[str, type[RuleType]] = field(default_factory=dict)
    destinations: dict[str, type[Destination]] = field(default_factory=dict)
    owners: dict[tuple[str, str], str] = field(default_factory=dict)

    def table(self, kind: str) -> dict[str, Any]:
        tables: dict[str, dict[str, Any]] = {
            "source": self.sources,
            "rule": self.rules,
            "destination": self.destinations,
        }
        return tables[kind]


class Plugins:
    """The plugins pqlhub loaded, and the connectors they provide.

    Build one with `Plugins.discover()` (built-ins and installed plugins) or
    `Plugins.of(...)` (built-ins and the plugin objects given, no entry points:
    for embedding and tests).
    """

    def __init__(self) -> None:
        self._manager = pluggy.PluginManager(hookspecs.PROJECT)
        self._manager.add_hookspecs(hookspecs)
        self._registry = _Registry()
        self._infos: list[PluginInfo] = []

    @classmethod
    def discover(cls, extra: Iterable[object] = ()) -> Plugins:
        """Load the built-ins, every installed plugin, and `extra` plugin objects."""
        plugins = cls._with_builtins()
        for entry_point in _allowed(entry_points(group=ENTRY_POINT_GROUP)):
            plugins.load_entry_point(entry_point)
        for plugin in extra:
            plugins.register(plugin)
        return plugins

    @classmethod
    def of(cls, *plugins: object, builtins: bool = True) -> Plugins:
        """Build a manager from plugin objects only, without entry points.

        Args:
            *plugins: Modules or objects with `@hookimpl` functions.
            builtins: Whether to register the core's built-in connectors too.
        """
        manager = cls._with_builtins() if builtins else cls()
        for plugin in plugins:
            manager.register(plugin)
        return manager

    @classmethod
    def _with_builtins(cls) -> Plugins:
        plugins = cls()
        from pqlhub.version import __version__

        for module_name in BUILTIN_PLUGINS:
            module = importlib.import_module(module_name)
            plugins.register(
                module, name=module_name, version=__version__, builtin=True
            )
        return plugins

    # ------------------------------------------------------------------ loading

    def load_entry_point(self, entry_point: EntryPoint) -> PluginInfo:
        """Import one entry point and register it, recording any failure."""
        dist = entry_point.dist
        distribution = dist.name if dist is not None else None
        version = dist.version if dist is not None else None
        try:
            plugin = entry_point.load()
        except Exception as exc:  # a broken plugin must not break the others
            reason = f"Importing {entry_point.value!r} failed: {_describe(exc)}"
            return self._failed(
                entry_point.name, entry_point.value, distribution, version, reason
            )
        return self.register(
            plugin, name=entry_point.name, distribution=distribution, version=version
        )

    def register(
        self,
        plugin: object,
        name: str | None = None,
        distribution: str | None = None,
        version: str | None = None,
        builtin: bool = False,
    ) -> PluginInfo:
        """Register one plugin object and collect the connectors it provides.

        Args:
            plugin: A module or object with `@hookimpl` functions.
            name: The plugin's name; defaults to the module's name.
            distribution: The distribution it came from, if known.
            version: That distribution's version, if known.
            builtin: Whether it ships with the core.

        Returns:
            The plugin's info; its `error` says why it was left out, if it was.
        """
        module = getattr(plugin, "__name__", type(plugin).__name__)
        name = name or module
        try:
            self._manager.register(plugin, name=name)
            found = self._collect(plugin)
        except Exception as exc:  # a broken plugin must not break the others
            if self._manager.is_registered(plugin):
                self._manager.unregister(plugin)
            return self._failed(name, module, distribution, version, _describe(exc))

        for kind, connectors in found.items():
            for connector in connectors:
                self._registry.table(kind)[connector.name] = connector
                self._registry.owners[(kind, connector.name)] = name
        info = PluginInfo(
            name=name,
            module=module,
            distribution=distribution,
            version=version,
            builtin=builtin,
            sources=tuple(c.name for c in found["source"]),
            rules=tuple(c.name for c in found["rule"]),
            destinations=tuple(c.name for c in found["destination"]),
        )
        self._infos.append(info)
        return info

    def _collect(self, plugin: object) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        for kind, hook_name, base in _KINDS:
            hook = getattr(self._manager.hook, hook_name)
            own = [impl for impl in hook.get_hookimpls() if impl.plugin is plugin]
            connectors: list[Any] = []
            for impl in own:
                connectors.extend(impl.function() or ())
            for connector in connectors:
                self._check_connector(kind, base, connector)
            found[kind] = connectors
        return found

    def _check_connector(self, kind: str, base: type, connector: Any) -> None:
        if not (isinstance(connector, type) and issubclass(connector, base)):
            msg = (
                f"The {kind} hook returned {connector!r}, which is not a subclass "
                f"of pqlhub.{base.__name__}."
            )
            raise PluginError(msg)
        name = getattr(connector, "name", None)
        if not isinstance(name, str) or not name:
            msg = f"The {kind} {connector.__name__} has no `name`."
            raise PluginError(msg)
        owner = self._registry.owners.get((kind, name))
        if owner is not None:
            msg = f"The {kind} name {name!r} is already registered by {owner!r}."
            raise PluginError(msg)
        schema = getattr(
            connector, "args_schema" if kind == "rule" else "config_schema"
        )
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            msg = f"The {kind} {name!r} has an invalid schema: {exc.message}"
            raise PluginError(msg) from exc

    def _failed(
        self,
        name: str,
        module: str,
        distribution: str | None,
        version: str | None,
        reason: str,
    ) -> PluginInfo:
        logger.warning("Plugin %r was not loaded: %s", name, reason)
        info = PluginInfo(
            name=name,
            module=module,
            distribution=distribution,
            version=version,
            error=reason,
        )
        self._infos.append(info)
        return info

    # ------------------------------------------------------------------ lookups

    @property
    def infos(self) -> Sequence[PluginInfo]:
        """Every plugin tried, loaded or not, in load order."""
        return tuple(self._infos)

    @property
    def hook(self) -> Any:
        """pluggy's hook relay, for calling hooks such as `pqlhub_add_commands`."""
        return self._manager.hook

    @property
    def sources(self) -> Mapping[str, type[Source]]:
        """Source classes by name."""
        return dict(self._registry.sources)

    @property
    def rules(self) -> Mapping[str, type[RuleType]]:
        """Rule-type classes by name."""
        return dict(self._registry.rules)

    @property
    def destinations(self) -> Mapping[str, type[Destination]]:
        """Destination classes by name."""
        return dict(self._registry.destinations)

    def source(self, name: str) -> type[Source]:
        """Return the source class registered as `name`."""
        return _lookup("source", name, self._registry.sources)

    def rule(self, name: str) -> type[RuleType]:
        """Return the rule-type class registered as `name`."""
        return _lookup("rule type", name, self._registry.rules)

    def destination(self, name: str) -> type[Destination]:
        """Return the destination class registered as `name`."""
        return _lookup("destination", name, self._registry.destinations)


def _lookup(kind: str, name: str, table: Mapping[str, ConnectorT]) -> ConnectorT:
    try:
        return table[name]
    except KeyError:
        known = ", ".join(repr(known) for known in sorted(table)) or "none"
        msg = (
            f"No installed plugin provides the {kind} {name!r}; "
            f"installed {kind}s: {known}. Run 'pqlhub plugins' to see load errors."
        )
        raise UnknownPluginError(msg) from None


def _allowed(found: Iterable[EntryPoint]) -> list[EntryPoint]:
    allow = os.environ.get(ALLOW_LIST_VARIABLE)
    points = sorted(found, key=lambda point: point.name)
    if allow is None:
        return points
    names = {name.strip() for name in allow.split(",") if name.strip()}
    return [point for point in points if point.name in names]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
