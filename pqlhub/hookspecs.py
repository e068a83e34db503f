"""The hooks a pqlhub plugin implements: the plugin author's contract.

A plugin is a module (or any object) with functions marked `@pqlhub.hookimpl` whose
names match the specifications below. Installed plugins are found through the
`pqlhub` entry-point group::

    [project.entry-points.pqlhub]
    csv = "pqlhub_csv"

pqlhub's own built-in connectors register through the very same hooks.

Every hook here is called once per plugin when the plugin manager is built, never
during a run, so a hook may do cheap work only: return classes, do not open files
or connections. pluggy collects the returns of all plugins into one list; none of
these hooks stops at the first result.
"""

from __future__ import annotations

from collections.abc import Sequence

import click
import pluggy

from pqlhub.connectors import Destination, RuleType, Source

__all__ = ["hookimpl", "hookspec"]

PROJECT = "pqlhub"

hookspec = pluggy.HookspecMarker(PROJECT)
"""Marks a function in this module as a hook specification."""

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin's function as the implementation of a hook."""


# --------------------------------------------------------------------- connectors


@hookspec
def pqlhub_source_types() -> Sequence[type[Source]]:
    """Return the source connectors this plugin provides.

    Called once, when the plugin manager is built. Each class must subclass
    `pqlhub.Source` and set `name` (what a recipe writes as `plugin = "..."` in a
    `[sources.*]` block), `config_schema` and `capabilities`. Two plugins that
    register the same name are a load error for the second one; the first keeps it.

    This hook takes no parameters.

    Returns:
        The source classes, not instances: the core builds one instance per recipe
        block that names the source, with that block's validated config. An empty
        sequence when the plugin provides no source.
    """
    raise NotImplementedError


@hookspec
def pqlhub_rule_types() -> Sequence[type[RuleType]]:
    """Return the segment-rule types this plugin provides.

    Called once, when the plugin manager is built. Each class must subclass
    `pqlhub.RuleType` and set `name` (what a recipe writes as
    `rule = { type = "..." }` in a `[segments.*]` block) and `args_schema`. The
    expression rule written as `where = "..."` is the built-in rule type `where`.

    This hook takes no parameters.

    Returns:
        The rule-type classes, not instances. The core instantiates each with no
        arguments and calls `compile` once per segment that uses it. An empty
        sequence when the plugin provides no rule type.
    """
    raise NotImplementedError


@hookspec
def pqlhub_destination_types() -> Sequence[type[Destination]]:
    """Return the destination connectors this plugin provides.

    Called once, when the plugin manager is built. Each class must subclass
    `pqlhub.Destination` and set `name` (what a recipe writes as `plugin = "..."`
    in a `[destinations.*]` block), `config_schema`, `actions` and `limits`. A sync
    that names an action the destination does not declare fails validation.

    This hook takes no parameters.

    Returns:
        The destination classes, not instances: the core builds one instance per
        recipe block per run, with that block's validated config, and closes it at
        the end of the run. An empty sequence when the plugin provides none.
    """
    raise NotImplementedError


# ----------------------------------------------------------------------------- CLI


@hookspec
def pqlhub_add_commands(cli: click.Group) -> None:
    """Add commands of the plugin's own to the `pqlhub` command line.

    Called once, when the `pqlhub` command starts, after the built-in commands
    exist and before the arguments are parsed; not called when pqlhub is embedded.
    A plugin that serves a vendor might add `pqlhub hubspot ...` this way. Name
    commands after the plugin so two plugins cannot collide; a command whose name
    is taken is not added, and a warning names both.

    Args:
        cli: The top-level `pqlhub` click group. Call `cli.add_command(...)` on it.
            The group's context object is the CLI's state; commands should get
            the plugin manager through `pqlhub.cli.current_plugins()`.
    """
