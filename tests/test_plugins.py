"""Plugin discovery: entry points, built-ins, broken plugins, and each hook."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

import pqlhub
from pqlhub import (
    Action,
    Destination,
    RuleType,
    Source,
    SourceCapabilities,
    hookimpl,
    hookspecs,
)
from pqlhub.plugins import Plugins

from .conftest import Cli, Installer

BROKEN_PLUGIN = """
raise RuntimeError("the vendor SDK is missing")
"""

GOOD_PLUGIN = """
from pqlhub import Source, SourceCapabilities, hookimpl

class Thing(Source):
    name = "thing"
    capabilities = SourceCapabilities(entities=frozenset({"contact"}))

    def read(self, cursor=None):
        yield {"email": "a@example.com"}

@hookimpl
def pqlhub_source_types():
    return [Thing]
"""


class _Rows(Source):
    name = "rows"
    capabilities = SourceCapabilities(entities=frozenset({"contact"}))

    def read(self, cursor: Any = None) -> Any:
        yield from self.config.get("rows", [])


def _hooks() -> list[str]:
    return [name for name in dir(hookspecs) if name.startswith("pqlhub_")]


def test_plugins_lists_csv_source_from_its_distribution(cli: Cli) -> None:
    result = cli("plugins", "--format", "json")

    assert result.code == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    csv = plugins["csv"]
    assert csv["distribution"] == "pqlhub-csv"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", csv["version"])
    assert csv["sources"] == ["csv"]
    assert csv["error"] is None


def test_plugins_reports_broken_plugin_and_keeps_others(
    cli: Cli, install_plugin: Installer
) -> None:
    cli.add_path(install_plugin("pqlhub-broken", BROKEN_PLUGIN, "broken"))
    cli.add_path(install_plugin("pqlhub-thing", GOOD_PLUGIN, "thing"))

    result = cli("plugins", "--format", "json")

    assert result.code == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert "the vendor SDK is missing" in plugins["broken"]["error"]
    assert "RuntimeError" in plugins["broken"]["error"]
    assert plugins["broken"]["distribution"] == "pqlhub-broken"
    assert plugins["thing"]["sources"] == ["thing"]
    assert plugins["csv"]["error"] is None


def test_plugins_table_names_broken_plugin(cli: Cli, install_plugin: Installer) -> None:
    cli.add_path(install_plugin("pqlhub-broken", BROKEN_PLUGIN, "broken"))

    result = cli("plugins")

    assert result.code == 0
    line = next(row for row in result.stdout.splitlines() if row.startswith("broken"))
    assert "error: Importing 'pqlhub_broken' failed" in line
    assert "the vendor SDK is missing" in line


def test_plugins_allow_list_limits_entry_points(
    cli: Cli, install_plugin: Installer
) -> None:
    cli.add_path(install_plugin("pqlhub-thing", GOOD_PLUGIN, "thing"))

    result = cli("plugins", "--format", "json", env={"PQLHUB_PLUGINS": "thing"})

    names = [p["name"] for p in json.loads(result.stdout)["plugins"]]
    assert "thing" in names
    assert "csv" not in names
    assert "pqlhub.rules" in names


def test_register_rejects_non_connector() -> None:
    plugin = SimpleNamespace(pqlhub_source_types=hookimpl(lambda: [object]))

    info = Plugins.of(plugin).infos[-1]

    assert info.error is not None
    assert "not a subclass of pqlhub.Source" in info.error


def test_register_rejects_duplicate_connector_name() -> None:
    first = SimpleNamespace(pqlhub_source_types=hookimpl(lambda: [_Rows]))
    second = SimpleNamespace(pqlhub_source_types=hookimpl(lambda: [_Rows]))

    plugins = Plugins.of(first, second)

    assert plugins.infos[-2].error is None
    assert "already registered" in (plugins.infos[-1].error or "")
    assert plugins.source("rows") is _Rows


def test_lookup_of_unknown_connector_names_the_installed_ones() -> None:
    plugins = Plugins.of(SimpleNamespace(pqlhub_source_types=hookimpl(lambda: [_Rows])))

    with pytest.raises(
        pqlhub.UnknownPluginError, match=r"'nope'.*installed sources: 'rows'"
    ):
        plugins.source("nope")


def test_hook_pqlhub_source_types() -> None:
    class Plugin:
        @hookimpl
        def pqlhub_source_types(self) -> Sequence[type[Source]]:
            return [_Rows]

    assert Plugins.of(Plugin()).source("rows") is _Rows


def test_hook_pqlhub_rule_types() -> None:
    class Always(RuleType):
        name = "always"

        def compile(self, args: Any, context: Any) -> Any:
            raise NotImplementedError

    class Plugin:
        @hookimpl
        def pqlhub_rule_types(self) -> Sequence[type[RuleType]]:
            return [Always]

    assert Plugins.of(Plugin()).rule("always") is Always


def test_hook_pqlhub_destination_types() -> None:
    class Sink(Destination):
        name = "sink"
        actions: ClassVar[dict[str, Action]] = {}

        def apply(self, batch: Any) -> Any:
            return []

    class Plugin:
        @hookimpl
        def pqlhub_destination_types(self) -> Sequence[type[Destination]]:
            return [Sink]

    assert Plugins.of(Plugin()).destination("sink") is Sink


def test_hook_pqlhub_add_commands(cli: Cli, install_plugin: Installer) -> None:
    source = """
    import click
    from pqlhub import hookimpl

    @click.command()
    def hello():
        click.echo("hello from a plugin")

    @click.command()
    def validate():
        click.echo("should not replace the built-in")

    @hookimpl
    def pqlhub_add_commands(cli):
        cli.add_command(hello)
        cli.add_command(validate)
    """
    cli.add_path(install_plugin("pqlhub-hello", source, "hello"))

    assert cli("hello").stdout.strip() == "hello from a plugin"
    assert "hello" in cli("--help").stdout
    assert "Check a recipe offline" in cli("validate", "--help").stdout


@pytest.mark.parametrize("hook", _hooks())
def test_hookspec_is_typed_and_documents_each_parameter(hook: str) -> None:
    function = getattr(hookspecs, hook)
    signature = inspect.signature(function)
    doc = inspect.getdoc(function) or ""

    assert signature.return_annotation is not inspect.Signature.empty
    assert len(doc.splitlines()) >= 5, "the docstring is the plugin author's contract"
    assert "Called" in doc, "say when the hook is called"
    for name, parameter in signature.parameters.items():
        assert parameter.annotation is not inspect.Parameter.empty, name
        assert re.search(rf"^\s+{name}:", doc, re.MULTILINE), f"{name} not documented"
    if not signature.parameters:
        assert "takes no parameters" in doc


@pytest.mark.parametrize("hook", _hooks())
def test_every_hook_has_a_test(hook: str) -> None:
    tests = Path(__file__).read_text()

    assert f"def test_hook_{hook}(" in tests


def test_import_pqlhub_loads_no_plugin() -> None:
    code = (
        "import sys, pqlhub; "
        "print(sorted(m for m in sys.modules if m.startswith(('pqlhub_', 'openapi'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert done.stdout.strip() == "[]"
