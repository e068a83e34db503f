"""The `pqlhub` command line: thin commands over the library, one error boundary.

Each command parses its options, calls one library function and renders the result.
Errors become a single `Error: ...` message on stderr with exit code 1 (2 for usage
mistakes), in `PqlhubGroup.invoke`, not in each command. Logging is configured here
and nowhere else.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import click
import orjson

from pqlhub.engine import Evaluation, compile_recipe, evaluate
from pqlhub.errors import PqlhubError
from pqlhub.ledger import Ledger
from pqlhub.plugins import Plugins
from pqlhub.recipe import Recipe, load_recipe
from pqlhub.redaction import RedactingFilter, redact
from pqlhub.render import (
    count,
    explanation_text,
    failures_text,
    plan_text,
    plugin_table,
    reads_text,
    render_table,
    results_text,
    runs_text,
    segments_json,
    segments_text,
)
from pqlhub.runs import check_recipe, plan_recipe, run_recipe
from pqlhub.sync import Delivery
from pqlhub.version import __version__

__all__ = ["cli", "current_plugins", "main"]

logger = logging.getLogger(__name__)

EXIT_ERROR: Final = 1

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
        count(len(recipe.sources), "source"),
        count(len(compiled.traits), "trait"),
        count(len(compiled.dimensions), "dimension"),
        count(len(compiled.segments), "segment"),
        count(len(recipe.destinations), "destination"),
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
    click.echo(plugin_table(infos))


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
    return evaluate(_load(recipe_path), as_of=_moment(as_of), progress=_reading())


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
        _echo_json(segments_json(evaluation, members))
        return
    click.echo(segments_text(evaluation, members))


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
    click.echo(explanation_text(explanation))


def _moment(as_of: datetime | None) -> datetime | None:
    return as_of.replace(tzinfo=UTC) if as_of is not None else None


@cli.command()
@recipe_argument
@as_of_option
@format_option
@click.option(
    "--out", type=click.Path(dir_okay=False), help="Write the full plan here."
)
@click.option("--force", is_flag=True, help="Plan past the max_remove guard rail.")
def plan(
    recipe_path: str,
    as_of: datetime | None,
    output_format: str,
    out: str | None,
    force: bool,
) -> None:
    """Show what a run would change in each destination, sending nothing.

    Per sync: contacts to add (they entered a segment), to remove (they left)
    and to update (their fields changed), against what the ledger says each
    destination holds. --out writes every change as JSON.
    """
    report = plan_recipe(
        _load(recipe_path), as_of=_moment(as_of), force=force, progress=_reading()
    )
    if out is not None:
        full = orjson.dumps(report.plan.as_dict(full=True), option=orjson.OPT_INDENT_2)
        Path(out).write_bytes(full + b"\n")
    if output_format == "json":
        _echo_json(report.plan.as_dict())
    else:
        click.echo(plan_text(report.plan))
    if report.exit_code:
        click.get_current_context().exit(report.exit_code)


@cli.command()
@recipe_argument
@as_of_option
@format_option
@click.option("--dry-run", is_flag=True, help="Stop after the plan; send nothing.")
@click.option("--force", is_flag=True, help="Send past the max_remove guard rail.")
def run(
    recipe_path: str,
    as_of: datetime | None,
    output_format: str,
    dry_run: bool,
    force: bool,
) -> None:
    """Run a recipe: read, build profiles, segment, plan and deliver.

    Exits 0 when everything was delivered, 1 when an error stopped the run or a
    sync, and 3 when the run finished but some changes failed (see 'pqlhub
    failures'; they are retried on the next run).
    """
    recipe = _load(recipe_path)
    moment = _moment(as_of)
    if dry_run:
        report = plan_recipe(recipe, as_of=moment, force=force, progress=_reading())
    else:
        delivery = Delivery(progress=_progress() if sys.stderr.isatty() else None)
        report = run_recipe(
            recipe, as_of=moment, force=force, delivery=delivery, progress=_reading()
        )
    if output_format == "json":
        result = segments_json(report.evaluation, members=False)
        result["sources"] = [read.as_dict() for read in report.evaluation.reads]
        result["plan"] = report.plan.as_dict()
        result["syncs"] = [r.as_dict() for r in report.results]
        result["exit_code"] = report.exit_code
        _echo_json(result)
    else:
        click.echo(reads_text(report.evaluation))
        click.echo("")
        click.echo(segments_text(report.evaluation, members=False))
        click.echo("")
        click.echo(plan_text(report.plan) if dry_run else results_text(report))
    if report.exit_code:
        click.get_current_context().exit(report.exit_code)


def _reading() -> Callable[[str, int, bool], None] | None:
    """Show reading progress on a terminal; stay quiet when stderr is not one."""
    if not sys.stderr.isatty():
        return None
    started: dict[str, float] = {}

    def show(source: str, records: int, finished: bool) -> None:
        begun = started.setdefault(source, time.monotonic())
        rate = records / max(time.monotonic() - begun, 1e-6)
        line = f"\rReading {source}: {records:,} records ({rate:,.0f}/s)"
        click.echo(line, err=True, nl=finished)

    return show


def _progress() -> Callable[[str, int, int], None]:
    started: dict[str, float] = {}

    def show(sync: str, settled: int, total: int) -> None:
        begun = started.setdefault(sync, time.monotonic())
        rate = settled / max(time.monotonic() - begun, 1e-6)
        line = f"\r{sync}: {settled:,}/{total:,} changes ({rate:,.0f}/s)"
        click.echo(line, err=True, nl=settled >= total)

    return show


@cli.command()
@recipe_argument
@click.option("--sync", "sync_name", help="Only this sync's failures.")
@click.option("--dead", is_flag=True, help="Only dead letters.")
@format_option
def failures(
    recipe_path: str, sync_name: str | None, dead: bool, output_format: str
) -> None:
    """List changes that failed: their reason, tries, and whether they are dead.

    Pending failures are retried on the next run; dead letters (those that
    failed max_attempts times) wait for 'pqlhub retry'.
    """
    recipe = _load(recipe_path)
    with Ledger.open(recipe.ledger_path) as ledger:
        found = ledger.failures(sync_name, dead=True if dead else None)
    if output_format == "json":
        _echo_json({"failures": [failure.as_dict() for failure in found]})
        return
    click.echo(failures_text(found))


@cli.command()
@recipe_argument
@click.option("--limit", default=20, show_default=True, help="How many runs to show.")
@format_option
def history(recipe_path: str, limit: int, output_format: str) -> None:
    """List the recipe's latest runs: when, their status, and what they sent."""
    recipe = _load(recipe_path)
    with Ledger.open(recipe.ledger_path) as ledger:
        runs = ledger.runs(limit)
    if output_format == "json":
        _echo_json({"runs": [run.as_dict() for run in runs]})
        return
    click.echo(runs_text(runs))


@cli.command()
@recipe_argument
@click.option("--sync", "sync_name", help="Only this sync's dead letters.")
def retry(recipe_path: str, sync_name: str | None) -> None:
    """Re-queue dead letters so the next run tries them again."""
    recipe = _load(recipe_path)
    with Ledger.open(recipe.ledger_path) as ledger:
        requeued = ledger.requeue(sync_name)
    click.echo(f"Re-queued {count(requeued, 'dead letter')} for the next run.")


@cli.command()
@recipe_argument
@format_option
def check(recipe_path: str, output_format: str) -> None:
    """Check each source and destination that can be checked, changing nothing.

    Destinations verify credentials and permissions against their API; sources
    verify that their data can be read. Exits 1 when a check fails.
    """
    recipe = _load(recipe_path)
    results = check_recipe(recipe)
    if output_format == "json":
        _echo_json({"checks": [dict(r) for r in results]})
    else:
        rows = [("BLOCK", "CHECK", "OK", "MESSAGE")]
        rows += [
            (r["block"], r["name"], "yes" if r["ok"] else "NO", r["message"])
            for r in results
        ]
        click.echo(render_table(rows) if results else "Nothing to check.")
    if any(not r["ok"] for r in results):
        click.get_current_context().exit(EXIT_ERROR)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the `pqlhub` command (the console script's entry point)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="pqlhub")
