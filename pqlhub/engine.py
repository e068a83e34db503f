"""The engine: runs a recipe's stages in order, from sources to segments.

`compile_recipe` checks the parts of a recipe that need compiling (traits,
dimensions, rules) without reading any data; `evaluate` reads the sources, builds
the profiles and sorts them into segments. Both take plain values and return plain
values, so other programs can embed them.
"""

from __future__ import annotations

import gc
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pqlhub.connectors import Record
from pqlhub.errors import Problem, RecipeInvalidError
from pqlhub.plan import compile_syncs
from pqlhub.profiles import (
    ACCOUNT_PREFIX,
    FoldReport,
    Identity,
    ProfileTable,
    TableBuilder,
    fold_events,
    parse_traits,
)
from pqlhub.recipe import Recipe
from pqlhub.segments import (
    Compiled,
    Explanation,
    Segment,
    SegmentCompiler,
    explain_profile,
    sort_into_segments,
)
from pqlhub.sources import ReadProgress, ReadReport, SourceReader

__all__ = ["Evaluation", "compile_recipe", "evaluate"]

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass
class Evaluation:
    """The outcome of evaluating a recipe: profiles and segments.

    Attributes:
        recipe: The recipe evaluated.
        as_of: The time the evaluation was made for.
        compiled: The compiled traits, dimensions and segments.
        table: The profiles.
        dimensions: Each dimension's column of values.
        segments: Every expanded segment, in recipe order then by name.
        reads: What each source yielded.
        events: What folding the events found.
        timings: Seconds spent per stage.
    """

    recipe: Recipe
    as_of: datetime
    compiled: Compiled
    table: ProfileTable
    dimensions: dict[str, list[str | None]]
    segments: list[Segment]
    reads: list[ReadReport]
    events: FoldReport
    timings: dict[str, float] = field(default_factory=dict)

    def segment(self, name: str) -> Segment:
        """Return the expanded segment called `name`.

        Raises:
            KeyError: When no segment has that name.
        """
        for segment in self.segments:
            if segment.name == name:
                return segment
        raise KeyError(name)

    def members(self, name: str) -> tuple[str, ...]:
        """Return the contact keys of the expanded segment called `name`."""
        return self.segment(name).members

    def explain(self, key: str) -> Explanation | None:
        """Explain each segment's decision for one contact, or None if unknown."""
        profile = self.table.profile(key)
        if profile is None:
            return None
        return explain_profile(
            profile, self.compiled.segments, self.dimensions, self.compiled.fields
        )


def compile_recipe(recipe: Recipe, as_of: datetime | None = None) -> Compiled:
    """Compile the recipe's traits, dimensions, segments and syncs, reading no data.

    Raises:
        RecipeInvalidError: Listing every problem found.
    """
    moment = as_of or recipe.as_of or datetime.now(UTC)
    compiler = _compiler(recipe, lambda name: _nothing, lambda: moment)
    problems = compiler.problems
    if not recipe.sources_of("contact"):
        problems.append(
            Problem("sources", "The recipe needs a source with entity 'contact'.")
        )
    syncs = compile_syncs(recipe, problems)
    compiled = compiler.compile(recipe.origin)
    compiled.syncs = syncs
    return compiled


def _nothing(profile: Any) -> Any:
    return None


def _compiler(
    recipe: Recipe, resolve: Callable[[str], Callable[[Any], Any]], now: Clock
) -> SegmentCompiler:
    problems: list[Problem] = []
    traits = parse_traits(recipe.data.get("traits", {}), recipe.origin, problems)
    return SegmentCompiler(
        data=recipe.data,
        plugins=recipe.plugins,
        traits=traits,
        resolve=resolve,
        now=now,
        min_size=recipe.min_size,
        max_dimension_values=recipe.max_dimension_values,
        problems=problems,
    )


def evaluate(
    recipe: Recipe,
    as_of: datetime | None = None,
    clock: Clock | None = None,
    progress: ReadProgress | None = None,
) -> Evaluation:
    """Read the recipe's sources, build profiles and sort them into segments.

    Args:
        recipe: A loaded recipe.
        as_of: The time to evaluate for; windows such as `within = "30d"` end
            here. Defaults to the recipe's `as_of`, then to `clock()`.
        clock: Where the current time comes from (UTC now by default).
        progress: Called as sources are read (see `pqlhub.sources.ReadProgress`).

    Raises:
        RecipeInvalidError: When the recipe does not compile, or a dimension is
            not groupable.
        DataError: When a source meets a malformed record and its policy is fail.
    """
    with _collector_paused():
        return _evaluate(recipe, as_of, clock, progress)


@contextmanager
def _collector_paused() -> Iterator[None]:
    # Evaluation allocates millions of short-lived dicts and no cycles; the
    # cyclic collector would only rescan the growing profile table each time.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _evaluate(
    recipe: Recipe,
    as_of: datetime | None,
    clock: Clock | None,
    progress: ReadProgress | None,
) -> Evaluation:
    moment = _aware(as_of or recipe.as_of or (clock or _utc_now)())
    timings: dict[str, float] = {}
    started = time.perf_counter()
    shape = compile_recipe(recipe, moment)
    identity = Identity.from_recipe(recipe.data.get("identity", {}))

    builder = _builder(recipe, shape, identity)
    reads: list[ReadReport] = []
    kept = {
        "account": builder.account_fields,
        "contact": builder.contact_fields,
    }
    for entity, add in (
        ("account", builder.add_accounts),
        ("contact", builder.add_contacts),
    ):
        for block in recipe.sources_of(entity):  # type: ignore[arg-type]
            fields = kept[entity] | {block.key or ""}
            with SourceReader(recipe, block, fields, progress) as reader:
                add(reader.records_of(), block.key or "key")
                reads.append(_logged(reader.report()))
    table = builder.finish()
    timings["contacts"] = _lap(started)

    events = fold_events(
        table,
        _event_records(recipe, reads, progress),
        shape.traits.values(),
        moment,
        identity.user,
    )
    timings["events"] = _lap(started) - timings["contacts"]

    compiled, dimensions = _compile_on(recipe, table, lambda: moment)
    compiled.syncs = shape.syncs
    segments = sort_into_segments(
        table, compiled.segments, compiled.dimensions, dimensions
    )
    timings["segments"] = _lap(started) - timings["contacts"] - timings["events"]
    _warn_absent(table, compiled)
    logger.info(
        "Evaluated %d segments over %d contacts in %.2f s.",
        len(segments),
        len(table),
        _lap(started),
    )
    return Evaluation(
        recipe, moment, compiled, table, dimensions, segments, reads, events, timings
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    # Event times are aware; a time given without a zone is UTC, as in recipes.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _lap(started: float) -> float:
    return time.perf_counter() - started


def _builder(recipe: Recipe, shape: Compiled, identity: Identity) -> TableBuilder:
    derived = {spec.field for spec in shape.traits.values()}
    derived |= {dimension.name for dimension in shape.dimensions}
    wanted = (set(shape.fields) | set(shape.sync_fields)) - derived
    contact = {name for name in wanted if not name.startswith(ACCOUNT_PREFIX)}
    contact |= {n for n in (identity.account, identity.email, identity.user) if n}
    account = {
        name[len(ACCOUNT_PREFIX) :]
        for name in wanted
        if name.startswith(ACCOUNT_PREFIX)
    }
    return TableBuilder(identity, frozenset(contact), frozenset(account))


def _compile_on(
    recipe: Recipe, table: ProfileTable, now: Clock
) -> tuple[Compiled, dict[str, list[str | None]]]:
    # Rules may read dimensions, and later dimensions earlier ones: each
    # dimension's column exists (empty) before compiling, and is filled in order.
    names = list(recipe.data.get("dimensions", {}))
    columns: dict[str, list[str | None]] = {}
    for name in names:
        columns[name] = [None] * len(table)
        table.add_column(name, columns[name])
    compiled = _compiler(recipe, table.getter, now).compile(recipe.origin)
    problems: list[Problem] = []
    for dimension in compiled.dimensions:
        values = dimension.compute(table)
        try:
            dimension.check_groupable(values)
        except RecipeInvalidError as exc:
            problems.extend(exc.problems)
        columns[dimension.name][:] = values
    if problems:
        raise RecipeInvalidError(recipe.origin, problems)
    return compiled, columns


def _event_records(
    recipe: Recipe, reads: list[ReadReport], progress: ReadProgress | None
) -> Iterator[Record]:
    # All event sources feed one fold: a fold per source would leave each trait
    # with the last source's events only. With no event source at all, the fold
    # still gives every trait its empty value. Chaining in C keeps this layer
    # off the per-event path.
    return itertools.chain.from_iterable(_event_streams(recipe, reads, progress))


def _event_streams(
    recipe: Recipe, reads: list[ReadReport], progress: ReadProgress | None
) -> Iterator[Iterator[Record]]:
    for block in recipe.sources_of("event"):
        with SourceReader(recipe, block, progress=progress) as reader:
            yield reader.records_of()
            reads.append(_logged(reader.report()))


def _warn_absent(table: ProfileTable, compiled: Compiled) -> None:
    for name in sorted(compiled.fields):
        if not table.has(name) or not _any_value(table, name):
            logger.warning(
                "No profile has a value for %r; rules that read it see it as missing.",
                name,
            )
    for sync in compiled.syncs:
        for field_name, source in sorted(sync.fields.items()):
            if not table.has(source) or not _any_value(table, source):
                logger.warning(
                    "Sync %r sends %r from %r, which no profile has; it is sent "
                    "empty. Check the spelling in the sync's fields.",
                    sync.name,
                    field_name,
                    source,
                )


def _any_value(table: ProfileTable, name: str) -> bool:
    if name.startswith(ACCOUNT_PREFIX):
        column = table.account_columns[name[len(ACCOUNT_PREFIX) :]]
    else:
        column = table.columns[name]
    return any(value is not None for value in column)


def _logged(report: ReadReport) -> ReadReport:
    logger.info(
        "Read %d %s records from source %r (%d skipped).",
        report.records,
        report.entity,
        report.source,
        report.skipped,
    )
    return report
