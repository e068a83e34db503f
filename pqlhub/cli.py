"""The `pqlhub` command line: thin commands over the library, one error boundary.

Each command parses its options, calls one library function and renders the result.
Errors become a single `Error: ...` message on stderr with exit code 1 (2 for usage
mistakes), in `PqlhubGroup.invoke`, not in each command. Logging is configured here
and nowhere else.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import click
import orjson

from pqlhub import __version__
from pqlhub.engine import Evaluation, compile_recipe, evaluate
from pqlhub.errors import PqlhubError
from pqlhub.plugins import PluginInfo, Plugins
from pqlhub.recipe import Recipe, load_recipe
from pqlhub.redaction import RedactingFilter, redact
from pqlhub.segments import Explanation, Segment

__all__ = ["cli", "current_plugins", "main"]

logger = logging.getLogger(__name__)

EXIT_ERROR: Final = 1
EXIT_PARTIAL: Final = 3

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class State:
    """What the top-level options set, shared with every command."""

    debug: bool = False
    plugins: Plugins | None = field(default=None, repr=False)
    plugin_commands: dict[str, click.Command] | None = field(default=None, repr=False)

    def get_plugins(self) -> Plugins:
        if self.plugins is None:
            self.plugins = Plugins.discover()
        return self.plugins


def current_plugins() -> Plugins:
    """Return the plugins the running `pqlhub` command loaded."""
    return click.get_current_context().ensure_object(State).get_plugins()


class PqlhubGroup(click.Group):
    """The top-level group: turns pqlhub's errors into one clean message.

    It also serves the commands plugins add through `pqlhub_add_commands`, found
    only when a name is not one of pqlhub's own (or when listing commands), so
    that built-in commands load plugins after logging is configured.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugin_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        return self._plugin_commands(ctx).get(cmd_name)

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        state = ctx.ensure_object(State)
        if state.plugin_commands is None:
            staging = click.Group()
            state.get_plugins().hook.pqlhub_add_commands(cli=staging)
            state.plugin_commands = {}
            for name, command in staging.commands.items():
                if name in self.commands:
                    logger.warning(
                        "A plugin's command %r was not added: pqlhub has its own.",
                        name,
                    )
                else:
                    state.plugin_commands[name] = command
        return state.plugin_commands

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except PqlhubError as exc:
            _fail(ctx, exc, redact(str(exc)))
        except Exception as exc:
            message = (
                f"Unexpected {type(exc).__name__}: {redact(str(exc))}. "
                "Run again with --debug to see the traceback."
            )
            _fail(ctx, exc, message)


def _fail(ctx: click.Context, exc: BaseException, message: str) -> None:
    state = ctx.find_object(State)
    if state is not None and state.debug:
        text = "".join(traceback.format_exception(exc))
        click.echo(redact(text), err=True, nl=False)
    raise click.ClickException(message) from exc


@click.group(cls=PqlhubGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="pqlhub")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors in the log output.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines for people (text) or for machines (json, one object a line).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.pass_context
def cli(
    ctx: click.Context, verbose: int, quiet: bool, log_format: str, debug: bool
) -> None:
    """Turn product usage into product-qualified leads, and sync them to your tools.

    A recipe (a TOML file) says where the data lives, who is qualified, and what
    should happen when someone enters or leaves a segment. Start with
    'pqlhub validate RECIPE', then 'pqlhub run RECIPE'.
    """
    state = ctx.ensure_object(State)
    state.debug = debug
    configure_logging(_level(verbose, quiet, debug), log_format)


def _level(verbose: int, quiet: bool, debug: bool) -> int:
    if quiet:
        return logging.ERROR
    if verbose >= 2 or debug:
        return logging.DEBUG
    return logging.INFO if verbose == 1 else logging.WARNING


def configure_logging(level: int, log_format: str) -> None:
    """Send pqlhub's log records to stderr, as text or JSON lines, redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)-8s %(name)s  %(message)s"))
    root = logging.getLogger("pqlhub")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


class JsonFormatter(logging.Formatter):
    """Formats a log record as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


def recipe_argument(function: F) -> F:
    """The RECIPE argument every recipe command takes."""
    return click.argument(
        "recipe_path",
        metavar="RECIPE",
        type=click.Path(dir_okay=False, path_type=str),
    )(function)


def format_option(function: F) -> F:
    """The --format option of commands that can answer in JSON."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="A readable table, or JSON for scripts.",
    )(function)


def _load(recipe_path: str) -> Recipe:
    return load_recipe(recipe_path, current_plugins())


def _echo_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


# ----------------------------------------------------------------------- commands


@cli.command()
@recipe_argument
def validate(recipe_path: str) -> None:
    """Check a recipe offline, reporting every problem with its key path.

    Exits 0 when the recipe is valid and 1 when it is not. Nothing is read from
    the sources and nothing is sent.
    """
    recipe = _load(recipe_path)
    compiled = compile_recipe(recipe)
    parts = [
        _count(len(recipe.sources), "source"),
        _count(len(compiled.traits), "trait"),
        _count(len(compiled.dimensions), "dimension"),
        _count(len(compiled.segments), "segment"),
        _count(len(recipe.destinations), "destination"),
    ]
    click.echo(f"Recipe {recipe_path} is valid: {', '.join(parts)}.")


@cli.command()
@format_option
def plugins(output_format: str) -> None:
    """List the installed plugins, what they provide, and any that failed to load.

    A plugin that fails to import is listed with the reason; the others keep
    working, and this command still exits 0.
    """
    infos = current_plugins().infos
    if output_format == "json":
        _echo_json({"plugins": [info.as_dict() for info in infos]})
        return
    click.echo(_plugin_table(infos))


def _plugin_table(infos: Sequence[PluginInfo]) -> str:
    rows = [("PLUGIN", "VERSION", "DISTRIBUTION", "PROVIDES", "STATUS")]
    for info in infos:
        provides = [f"source:{name}" for name in info.sources]
        provides += [f"rule:{name}" for name in info.rules]
        provides += [f"destination:{name}" for name in info.destinations]
        status = f"error: {info.error}" if info.error else "ok"
        distribution = info.distribution or ("(built-in)" if info.builtin else "-")
        rows.append(
            (
                info.name,
                info.version or "-",
                distribution,
                " ".join(provides) or "-",
                status,
            )
        )
    return render_table(rows)


def render_table(rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Render rows as aligned columns; columns in `right` align to the right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if index in right else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def as_of_option(function: F) -> F:
    """The --as-of option of commands that evaluate segments."""
    return click.option(
        "--as-of",
        type=click.DateTime(
            ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S"]
        ),
        default=None,
        help="Evaluate as if now were this UTC time, for reproducible runs.",
    )(function)


def _evaluate(recipe_path: str, as_of: datetime | None) -> Evaluation:
    recipe = _load(recipe_path)
    moment = as_of.replace(tzinfo=UTC) if as_of is not None else None
    return evaluate(recipe, as_of=moment)


@cli.command()
@recipe_argument
@as_of_option
@format_option
@click.option("--members", is_flag=True, help="List each segment's contact keys.")
def segments(
    recipe_path: str, as_of: datetime | None, output_format: str, members: bool
) -> None:
    """Show every segment with its size, its template and its flags.

    A segment smaller than its minimum size (500 unless the recipe says
    otherwise) is flagged; with enforce_min_size it is held back from syncs.
    """
    evaluation = _evaluate(recipe_path, as_of)
    if output_format == "json":
        _echo_json(_segments_json(evaluation, members))
        return
    click.echo(_segments_text(evaluation, members))


def _segments_json(evaluation: Evaluation, members: bool) -> dict[str, Any]:
    return {
        "recipe": evaluation.recipe.name,
        "as_of": evaluation.as_of.isoformat(),
        "contacts": len(evaluation.table),
        "segments": [s.as_dict(members=members) for s in evaluation.segments],
    }


def _segments_text(evaluation: Evaluation, members: bool) -> str:
    lines = [
        f"{len(evaluation.table):,} contacts, as of "
        f"{evaluation.as_of.isoformat(timespec='seconds')}."
    ]
    for definition in evaluation.compiled.segments:
        found = [s for s in evaluation.segments if s.id == definition.id]
        lines.append("")
        lines.append(f"{definition.id}: {definition.template}")
        if not found:
            lines.append("  (no members)")
            continue
        rows = [("  SEGMENT", "SIZE", "FLAGS")]
        for segment in found:
            rows.append((f"  {segment.name}", f"{segment.size:,}", _flags(segment)))
        lines.append(render_table(rows, right=(1,)))
        if members:
            for segment in found:
                keys = ", ".join(segment.members) or "(none)"
                lines.append(f"  {segment.name}: {keys}")
    return "\n".join(lines)


@cli.command()
@recipe_argument
@click.argument("contact_key", metavar="CONTACT_KEY")
@as_of_option
@format_option
def explain(
    recipe_path: str, contact_key: str, as_of: datetime | None, output_format: str
) -> None:
    """Show why a contact is in or out of each segment.

    Lists the profile values the rules read, the contact's dimension values,
    and for each segment whether it matched and what each condition saw.
    """
    evaluation = _evaluate(recipe_path, as_of)
    explanation = evaluation.explain(contact_key)
    if explanation is None:
        msg = (
            f"Contact {contact_key!r} is not among the recipe's "
            f"{len(evaluation.table):,} contacts; give the contact's key."
        )
        raise click.ClickException(msg)
    if output_format == "json":
        _echo_json(explanation.as_dict())
        return
    click.echo(_explanation_text(explanation))


def _explanation_text(explanation: Explanation) -> str:
    plain = explanation.as_dict()
    lines = [f"Contact {explanation.key}", "", "Profile values the rules read:"]
    rows = [(f"  {name}", _show(value)) for name, value in plain["values"].items()]
    lines.append(render_table(rows) if rows else "  (none)")
    lines += ["", "Dimensions:"]
    rows = [(f"  {name}", _show(value)) for name, value in plain["dimensions"].items()]
    lines.append(render_table(rows) if rows else "  (none)")
    lines += ["", "Segments:"]
    for verdict in plain["segments"]:
        mark = "IN " if verdict["matched"] else "OUT"
        target = f" -> {verdict['name']}" if verdict["name"] else ""
        lines.append(f"  {mark} {verdict['id']}{target}")
        for condition in verdict["conditions"]:
            seen = ", ".join(f"{k}={_show(v)}" for k, v in condition["values"].items())
            result = "yes" if condition["result"] else "no "
            lines.append(f"        {result}  {condition['text']}   [{seen}]")
        if verdict["reason"]:
            lines.append(f"        {verdict['reason']}")
    return "\n".join(lines)


def _flags(segment: Segment) -> str:
    if not segment.flags:
        return ""
    text = f"below minimum of {segment.min_size:,}"
    return f"{text}, held back from syncs" if segment.held_back else text


def _show(value: Any) -> str:
    if value is None:
        return "(missing)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(str(item) for item in value) + "]"
    return str(value)


@cli.command()
@recipe_argument
@as_of_option
@format_option
def run(recipe_path: str, as_of: datetime | None, output_format: str) -> None:
    """Run a recipe: read its sources, build profiles and compute its segments."""
    evaluation = _evaluate(recipe_path, as_of)
    if output_format == "json":
        result = _segments_json(evaluation, members=False)
        result["sources"] = [read.as_dict() for read in evaluation.reads]
        _echo_json(result)
        return
    click.echo(_reads_text(evaluation))
    click.echo("")
    click.echo(_segments_text(evaluation, members=False))


def _reads_text(evaluation: Evaluation) -> str:
    rows = [("SOURCE", "ENTITY", "RECORDS", "SKIPPED")]
    rows += [
        (r.source, r.entity, f"{r.records:,}", f"{r.skipped:,}")
        for r in evaluation.reads
    ]
    lines = [render_table(rows, right=(2, 3))]
    for read in evaluation.reads:
        if read.rejects:
            lines.append(
                f"Skipped records of {read.source!r} are kept in {read.rejects}."
            )
    events = evaluation.events
    if events.unknown_user:
        lines.append(
            f"{events.unknown_user:,} track calls named no known contact and were "
            "not counted."
        )
    return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def main(argv: Sequence[str] | None = None) -> None:
    """Run the `pqlhub` command (the console script's entry point)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="pqlhub")
