"""Rendering results for people: the tables and reports the CLI prints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pqlhub.engine import Evaluation
from pqlhub.ledger import Failure, RunRecord
from pqlhub.plan import Plan
from pqlhub.plugins import PluginInfo
from pqlhub.runs import RunReport
from pqlhub.segments import Explanation, Segment

__all__ = [
    "count",
    "explanation_text",
    "failures_text",
    "plan_text",
    "plugin_table",
    "reads_text",
    "render_table",
    "results_text",
    "runs_text",
    "segments_json",
    "segments_text",
]


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


def plugin_table(infos: Sequence[PluginInfo]) -> str:
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


def segments_json(evaluation: Evaluation, members: bool) -> dict[str, Any]:
    return {
        "recipe": evaluation.recipe.name,
        "as_of": evaluation.as_of.isoformat(),
        "contacts": len(evaluation.table),
        "segments": [s.as_dict(members=members) for s in evaluation.segments],
    }


def segments_text(evaluation: Evaluation, members: bool) -> str:
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


def explanation_text(explanation: Explanation) -> str:
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


def reads_text(evaluation: Evaluation) -> str:
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


def count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"


def plan_text(plan: Plan) -> str:
    """Render a plan: counts per sync, guard rails, and a sample of contacts."""
    if not plan.syncs:
        return "The recipe has no syncs: nothing to plan."
    rows = [("SYNC", "DESTINATION", "ADD", "REMOVE", "UPDATE", "HOLDING")]
    for sync in plan.syncs:
        rows.append(
            (
                sync.sync,
                sync.destination,
                f"{len(sync.adds):,}",
                f"{len(sync.removes):,}",
                f"{len(sync.updates):,}",
                f"{sync.holding:,}",
            )
        )
    lines = [render_table(rows, right=(2, 3, 4, 5))]
    for sync in plan.syncs:
        lines.extend(_plan_notes(sync))
    return "\n".join(lines)


def _plan_notes(sync: Any) -> list[str]:
    notes = []
    if sync.blocked:
        notes.append(f"{sync.sync}: BLOCKED. {sync.blocked}")
    if sync.baseline:
        notes.append(
            f"{sync.sync}: first run with initial = 'skip-existing': "
            f"{count(len(sync.baseline), 'contact')} will be recorded as present, "
            "none sent."
        )
    if sync.held_back:
        held = ", ".join(repr(name) for name in sync.held_back)
        notes.append(f"{sync.sync}: held back (below minimum size): {held}.")
    if sync.dead_letters:
        notes.append(
            f"{sync.sync}: {count(sync.dead_letters, 'dead letter')} left out; "
            "see 'pqlhub failures'."
        )
    if sync.unmatched:
        unmatched = ", ".join(repr(s) for s in sync.unmatched)
        notes.append(f"{sync.sync}: no segment matches {unmatched}.")
    for label, changes in (("add", sync.adds), ("remove", sync.removes)):
        if changes:
            sample = ", ".join(f"{c.key} ({c.segment})" for c in changes[:3])
            more = f" and {len(changes) - 3:,} more" if len(changes) > 3 else ""
            notes.append(f"{sync.sync}: {label} {sample}{more}.")
    return notes


def results_text(report: RunReport) -> str:
    """Render what a run delivered, per sync."""
    if not report.results:
        return "The recipe has no syncs: nothing was sent."
    rows = [("SYNC", "PLANNED", "DONE", "SKIPPED", "FAILED", "RETRY", "STATUS")]
    for result in report.results:
        rows.append(
            (
                result.sync,
                f"{result.planned:,}",
                f"{result.done:,}",
                f"{result.skipped:,}",
                f"{result.failed:,}",
                f"{result.retry:,}",
                _status(result),
            )
        )
    lines = [render_table(rows, right=(1, 2, 3, 4, 5))]
    for result in report.results:
        for message in (result.blocked, result.stopped):
            if message:
                lines.append(message)
        if result.failed or result.retry:
            lines.append(
                f"{result.sync}: {count(result.failed + result.retry, 'change')} "
                "did not go through; see 'pqlhub failures'."
            )
    return "\n".join(lines)


def _status(result: Any) -> str:
    if result.blocked:
        return "blocked"
    if result.stopped:
        return "stopped"
    if result.baseline:
        return f"baseline ({result.baseline:,})"
    if result.failed or result.retry:
        return "partial"
    if not result.planned:
        return "up to date"
    return "delivered"


def failures_text(failures: Sequence[Failure]) -> str:
    """Render failed changes, dead letters marked."""
    if not failures:
        return "No failed changes."
    rows = [
        ("SYNC", "CONTACT", "SEGMENT", "CHANGE", "KIND", "TRIES", "STATE", "REASON")
    ]
    for failure in failures:
        rows.append(
            (
                failure.sync,
                failure.contact,
                failure.segment,
                failure.change,
                failure.kind,
                str(failure.attempts),
                "dead" if failure.dead else "pending",
                failure.reason,
            )
        )
    return render_table(rows)


def runs_text(runs: Sequence[RunRecord]) -> str:
    """Render a recipe's run history, newest first."""
    if not runs:
        return "No runs yet."
    rows = [("RUN", "STARTED", "STATUS", "CONTACTS", "DONE", "FAILED", "MESSAGE")]
    for run in runs:
        syncs = run.counts.get("syncs", {}).values()
        done = sum(s.get("done", 0) for s in syncs)
        failed = sum(s.get("failed", 0) + s.get("retry", 0) for s in syncs)
        rows.append(
            (
                str(run.id),
                run.started_at[:19].replace("T", " "),
                run.status,
                f"{run.counts.get('contacts', 0):,}",
                f"{done:,}",
                f"{failed:,}",
                run.message or "",
            )
        )
    return render_table(rows, right=(0, 3, 4, 5))
