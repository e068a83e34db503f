"""A run: evaluate the recipe, record membership, plan, deliver, and remember it all.

`plan_recipe` stops after the plan and changes nothing; `run_recipe` applies it.
Both open the recipe's ledger (creating it on first use).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from pqlhub.connectors import MemoryState
from pqlhub.engine import Evaluation, evaluate
from pqlhub.ledger import Ledger, now_text
from pqlhub.plan import Plan, make_plan
from pqlhub.recipe import Recipe
from pqlhub.redaction import redact
from pqlhub.sources import ReadProgress, SourceReader
from pqlhub.sync import Delivery, SyncResult, deliver, open_destination

__all__ = ["RunReport", "plan_recipe", "run_recipe"]

logger = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_PARTIAL: Final = 3


@dataclass
class RunReport:
    """What a run (or a dry run) found and did.

    Attributes:
        evaluation: The profiles and segments.
        plan: The changes planned per sync.
        results: What delivery did per sync (empty for a dry run).
        run_id: The run's id in the ledger (None for a dry run).
        dry_run: Whether nothing was sent.
    """

    evaluation: Evaluation
    plan: Plan
    results: list[SyncResult] = field(default_factory=list)
    run_id: int | None = None
    dry_run: bool = False

    @property
    def exit_code(self) -> int:
        """0 when all was delivered, 1 when a sync stopped, 3 when records failed."""
        if any(r.stopped or r.blocked for r in self.results):
            return EXIT_ERROR
        if self.dry_run and any(s.blocked for s in self.plan.syncs):
            return EXIT_ERROR
        if any(r.failed or r.retry for r in self.results):
            return EXIT_PARTIAL
        return EXIT_OK

    def counts(self) -> dict[str, Any]:
        """Return the run's counts per sync, for the ledger and for scripts."""
        return {
            "contacts": len(self.evaluation.table),
            "segments": len(self.evaluation.segments),
            "syncs": {r.sync: r.as_dict() for r in self.results},
        }


Clock = Callable[[], datetime]


def plan_recipe(
    recipe: Recipe,
    as_of: datetime | None = None,
    force: bool = False,
    clock: Clock | None = None,
    progress: ReadProgress | None = None,
) -> RunReport:
    """Evaluate the recipe and plan every sync, sending and recording nothing."""
    evaluation = evaluate(recipe, as_of=as_of, clock=clock, progress=progress)
    with Ledger.open(recipe.ledger_path) as ledger:
        plan = _plan(evaluation, ledger, force)
    return RunReport(evaluation, plan, dry_run=True)


def run_recipe(
    recipe: Recipe,
    as_of: datetime | None = None,
    force: bool = False,
    delivery: Delivery | None = None,
    clock: Clock | None = None,
    progress: ReadProgress | None = None,
) -> RunReport:
    """Evaluate, record membership, plan and deliver; remember the run.

    Args:
        recipe: A loaded recipe.
        as_of: The time to evaluate for (see `evaluate`).
        force: Send past the `max_remove` guard rail.
        delivery: How to deliver (waits, clocks, delivery progress).
        clock: Where the current time comes from.
        progress: Called as sources are read.

    Raises:
        PqlhubError: When a stage cannot go on (the run is recorded as failed).
    """
    evaluation = evaluate(recipe, as_of=as_of, clock=clock, progress=progress)
    with Ledger.open(recipe.ledger_path) as ledger:
        run_id = ledger.start_run(evaluation.as_of)
        try:
            record_membership(evaluation, ledger)
            plan = _plan(evaluation, ledger, force)
            results = deliver(plan, recipe, ledger, run_id, delivery)
        except BaseException as exc:
            ledger.finish_run(run_id, "failed", {}, redact(str(exc)) or repr(exc))
            raise
        report = RunReport(evaluation, plan, results, run_id)
        status = {EXIT_OK: "complete", EXIT_PARTIAL: "partial"}.get(
            report.exit_code, "stopped"
        )
        ledger.finish_run(run_id, status, report.counts(), None)
    return report


def _plan(evaluation: Evaluation, ledger: Ledger, force: bool) -> Plan:
    return make_plan(
        evaluation.compiled.syncs,
        evaluation.segments,
        evaluation.table,
        ledger,
        evaluation.as_of,
        force=force,
    )


def record_membership(evaluation: Evaluation, ledger: Ledger) -> tuple[int, int]:
    """Record who entered and who left each segment since the last run.

    Returns:
        How many `(segment, contact)` pairs entered, and how many left.
    """
    current = {
        (segment.name, key): segment.id
        for segment in evaluation.segments
        for key in segment.members
    }
    open_stints = ledger.open_stints()
    entered = [
        (sid, s, c) for (s, c), sid in current.items() if (s, c) not in open_stints
    ]
    left = [pair for pair in open_stints if pair not in current]
    ledger.record_membership(entered, left, now_text())
    logger.info(
        "Membership: %d entered and %d left their segments.", len(entered), len(left)
    )
    return len(entered), len(left)


def check_recipe(recipe: Recipe) -> list[dict[str, Any]]:
    """Run every source's and destination's own checks, changing nothing.

    Returns:
        One entry per check: `block`, `name`, `ok` and `message`.
    """
    results: list[dict[str, Any]] = []
    for source in recipe.sources.values():
        with SourceReader(recipe, source) as reader:
            found = reader.source.check()
        results += [_check(f"sources.{source.name}", r) for r in found]
    for name, destination in recipe.destinations.items():
        # Checking reads only: a throwaway state, so nothing is written.
        instance = open_destination(destination, recipe, MemoryState())
        try:
            found = instance.check()
        finally:
            instance.close()
        results += [_check(f"destinations.{name}", r) for r in found]
    return results


def _check(block: str, result: Any) -> dict[str, Any]:
    return {
        "block": block,
        "name": result.name,
        "ok": result.ok,
        "message": redact(result.message),
    }
