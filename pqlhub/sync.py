"""Delivery: sending a plan to destinations in batches, and recording every outcome.

Each sync's changes are grouped by action and cut into batches of the action's (or
the destination's) declared size, then applied with the destination's declared
concurrency. Transient HTTP failures are retried inside each request by the shared
client (`pqlhub.http`); what still fails is recorded per change and retried on
later runs, up to the sync's `max_attempts`, then kept as a dead letter. A batch the
destination rejects as a whole for one bad record (`SkippableSyncError`) is split
in halves until the bad record stands alone. A config failure (`FatalSyncError`:
401, 403) stops that sync at once; its unsent changes stay pending.

The outcomes of each batch are committed to the ledger in one transaction, so a
crash loses at most the batches in flight, which the next run sends again; every
action is idempotent and every change carries a stable id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from pqlhub.connectors import (
    Batch,
    Change,
    Destination,
    DestinationContext,
    FailureKind,
    Outcome,
    OutcomeStatus,
    RateLimit,
    StateStore,
)
from pqlhub.errors import FatalSyncError, RetriableSyncError, SkippableSyncError
from pqlhub.http import HttpClient, RateLimiter, RetryPolicy
from pqlhub.ledger import Ledger, Settled
from pqlhub.plan import ActionCall, Plan, SyncPlan, SyncSpec, fields_hash
from pqlhub.recipe import DestinationBlock, Recipe
from pqlhub.redaction import redact

__all__ = ["Delivery", "SyncResult", "apply_batch", "deliver", "open_destination"]

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""Called as `progress(sync, changes_settled, changes_total)`."""


@dataclass
class SyncResult:
    """What delivering one sync's plan did.

    Attributes:
        sync: The sync's name.
        destination: The destination block's name.
        planned: Changes planned.
        done: Changes the destination confirmed.
        skipped: Changes the destination said needed nothing.
        failed: Changes that failed for a reason the data or vendor gave.
        retry: Changes that failed transiently, to retry on the next run.
        dead: Changes that became dead letters in this run.
        forgotten: Exits recorded without sending (the sync has no on_exit).
        baseline: Pairs recorded as present without sending (skip-existing).
        stopped: Why the sync stopped early (a config failure), if it did.
        blocked: Why the sync was not sent (a guard rail), if it was not.
    """

    sync: str
    destination: str
    planned: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    retry: int = 0
    dead: int = 0
    forgotten: int = 0
    baseline: int = 0
    stopped: str | None = None
    blocked: str | None = None

    @property
    def complete(self) -> bool:
        """Whether every planned change was delivered (or needed nothing)."""
        return not (self.failed or self.retry or self.stopped or self.blocked)

    def as_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready values."""
        return dict(self.__dict__)


@dataclass
class Delivery:
    """How a run delivers: waits and clocks are injectable for tests.

    Attributes:
        sleep: The function that waits (between retries, for rate limits).
        clock: The monotonic clock rate limiters measure windows with.
        progress: Called as changes settle, when set.
        policy: The HTTP retry policy destinations' clients use.
        transport: An httpx transport for every client, for tests.
    """

    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    progress: Progress | None = None
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    transport: Any = None


def deliver(
    plan: Plan,
    recipe: Recipe,
    ledger: Ledger,
    run_id: int,
    delivery: Delivery | None = None,
) -> list[SyncResult]:
    """Send every sync's plan and record the outcomes.

    Returns:
        One result per sync, in plan order.
    """
    options = delivery or Delivery()
    destinations: dict[str, Destination] = {}
    results = []
    try:
        for sync_plan in plan.syncs:
            spec = plan.specs[sync_plan.sync]
            result = SyncResult(sync_plan.sync, sync_plan.destination)
            results.append(result)
            if _settle_without_sending(sync_plan, spec, ledger, result):
                continue
            block = recipe.destinations[spec.destination]
            destination = destinations.get(block.name)
            if destination is None:
                state = ledger.state(block.name)
                destination = open_destination(block, recipe, state, options)
                destinations[block.name] = destination
            _deliver_sync(spec, sync_plan, destination, ledger, run_id, options, result)
    finally:
        for destination in destinations.values():
            destination.close()
    return results


def _settle_without_sending(
    plan: SyncPlan, spec: SyncSpec, ledger: Ledger, result: SyncResult
) -> bool:
    if plan.blocked:
        result.blocked = plan.blocked
        logger.error("%s", plan.blocked)
        return True
    if plan.baseline:
        result.baseline = ledger.baseline(spec.name, spec.destination, plan.baseline)
        logger.info(
            "Sync %r started from a baseline: %d contacts recorded as present, "
            "none sent.",
            spec.name,
            result.baseline,
        )
        return True
    if spec.on_exit is None and plan.removes:
        ledger.forget(spec.name, [(c.segment, c.key) for c in plan.removes])
        result.forgotten = len(plan.removes)
        plan.removes = []
    if plan.changes:
        return False
    # A first run with nothing to send starts the sync all the same: with
    # skip-existing, whoever enters later is an enter to send, not a baseline.
    ledger.mark_sync_started(spec.name, spec.destination)
    return True


def open_destination(
    block: DestinationBlock,
    recipe: Recipe,
    state: StateStore,
    options: Delivery | None = None,
) -> Destination:
    """Build a destination the way a run does: its HTTP clients share the run's
    retry policy and one rate limiter per declared rate.

    Args:
        block: The destination's recipe block.
        recipe: The recipe, for its folder.
        state: The destination's persistent state (the ledger's, in a run).
        options: How the run delivers; defaults to real time.
    """
    options = options or Delivery()
    connector = block.connector
    limiters: dict[RateLimit, RateLimiter] = {}

    def limiter(rate: RateLimit | None) -> RateLimiter | None:
        # One limiter per rate, shared by every client of the destination.
        if rate is None:
            return None
        if rate not in limiters:
            limiters[rate] = RateLimiter(
                rate.requests, rate.per_seconds, options.clock, options.sleep
            )
        return limiters[rate]

    def http(**arguments: Any) -> HttpClient:
        rate = arguments.pop("rate", connector.limits.rate)
        arguments.setdefault("policy", options.policy)
        arguments.setdefault("rate_limiter", limiter(rate))
        arguments.setdefault("sleep", options.sleep)
        if options.transport is not None:
            arguments.setdefault("transport", options.transport)
        return HttpClient(block.name, **arguments)

    context = DestinationContext(
        name=block.name,
        base_dir=recipe.base_dir,
        logger=logging.getLogger(f"pqlhub.plugins.{block.plugin}.{block.name}"),
        state=state,
        http_factory=http,
    )
    return connector(block.config, context)


@dataclass(frozen=True)
class _Work:
    """A batch and what the ledger needs to know about each of its changes."""

    batch: Batch
    hashes: Mapping[str, str]


def _batches(
    spec: SyncSpec, plan: SyncPlan, destination: Destination
) -> Iterator[_Work]:
    groups: list[tuple[ActionCall, list[Change]]] = [
        (spec.on_enter, [*plan.adds, *plan.updates])
    ]
    if spec.on_exit is not None:
        groups.append((spec.on_exit, plan.removes))
    for call, changes in groups:
        size = max(1, destination.batch_size(call.action))
        for start in range(0, len(changes), size):
            chunk = changes[start : start + size]
            hashes = {c.id: fields_hash(c.fields) for c in chunk}
            yield _Work(Batch(spec.name, call.action, call.options, chunk), hashes)


def _deliver_sync(
    spec: SyncSpec,
    plan: SyncPlan,
    destination: Destination,
    ledger: Ledger,
    run_id: int,
    options: Delivery,
    result: SyncResult,
) -> None:
    result.planned = len(plan.changes)
    ledger.mark_sync_started(spec.name, spec.destination)
    stop = threading.Event()
    workers = max(1, destination.limits.concurrency)
    waiting = _batches(spec, plan, destination)
    running: dict[Future[list[Outcome] | None], _Work] = {}
    settled = 0
    with ThreadPoolExecutor(workers, thread_name_prefix=f"pqlhub-{spec.name}") as pool:
        while True:
            # A batch starts only while fewer than `workers` are sent and not yet
            # recorded, so a crash loses the outcomes of at most that many.
            while len(running) < workers and not stop.is_set():
                work = next(waiting, None)
                if work is None:
                    break
                running[pool.submit(apply_batch, destination, work.batch, stop)] = work
            if not running:
                return
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                work = running.pop(future)
                if not _settle(spec, work, future, ledger, run_id, result, stop):
                    continue
                settled += len(work.batch.changes)
                if options.progress is not None:
                    options.progress(spec.name, settled, result.planned)


def _settle(
    spec: SyncSpec,
    work: _Work,
    future: Future[list[Outcome] | None],
    ledger: Ledger,
    run_id: int,
    result: SyncResult,
    stop: threading.Event,
) -> bool:
    """Record a finished batch's outcomes; return whether it had any."""
    try:
        outcomes = future.result()
    except FatalSyncError as exc:
        stop.set()
        if result.stopped is None:
            result.stopped = _stopped_message(spec, exc)
            logger.error("%s", result.stopped)
        return False
    if outcomes is None:
        return False
    _record(spec, work, outcomes, ledger, run_id, result)
    refused = next((o for o in outcomes if o.kind is FailureKind.CONFIG), None)
    if refused is not None:
        stop.set()
        result.stopped = result.stopped or _stopped_message(spec, refused)
    return True


def _stopped_message(spec: SyncSpec, cause: FatalSyncError | Outcome) -> str:
    reason = cause.reason if isinstance(cause, Outcome) else str(cause)
    return redact(
        f"Sync {spec.name!r} stopped: destination {spec.destination!r} refused it. "
        f"{reason} Unsent changes stay pending for the next run."
    )


def apply_batch(
    destination: Destination, batch: Batch, stop: threading.Event | None = None
) -> list[Outcome] | None:
    """Apply one batch the way a run does: isolate bad records, one outcome each.

    A `SkippableSyncError` splits the batch in halves until the bad record stands
    alone; a `RetriableSyncError` marks every change for retry; changes the
    destination gave no outcome for are marked for retry.

    Returns:
        One outcome per change, or None when `stop` was set before it began.

    Raises:
        FatalSyncError: When the destination refuses to go on.
    """
    if stop is not None and stop.is_set():
        return None
    try:
        outcomes = list(destination.apply(batch))
    except SkippableSyncError as exc:
        return _isolate(destination, batch, stop, str(exc))
    except RetriableSyncError as exc:
        return [Outcome.retry(change, redact(str(exc))) for change in batch.changes]
    return _complete(batch, outcomes)


def _isolate(
    destination: Destination,
    batch: Batch,
    stop: threading.Event | None,
    reason: str,
) -> list[Outcome] | None:
    changes = batch.changes
    if len(changes) == 1:
        return [Outcome.failed(changes[0], FailureKind.DATA, redact(reason))]
    middle = len(changes) // 2
    outcomes: list[Outcome] = []
    for half in (changes[:middle], changes[middle:]):
        part = apply_batch(destination, _with(batch, half), stop)
        if part is None:
            return outcomes or None
        outcomes.extend(part)
    return outcomes


def _with(batch: Batch, changes: Sequence[Change]) -> Batch:
    return Batch(batch.sync, batch.action, batch.options, changes)


def _complete(batch: Batch, outcomes: list[Outcome]) -> list[Outcome]:
    by_id = {outcome.change_id: outcome for outcome in outcomes}
    missing = [change for change in batch.changes if change.id not in by_id]
    if missing:
        logger.warning(
            "The destination gave no outcome for %d of %d changes of sync %r; "
            "they will be sent again on the next run.",
            len(missing),
            len(batch.changes),
            batch.sync,
        )
    complete = [by_id[c.id] for c in batch.changes if c.id in by_id]
    complete += [
        Outcome.retry(change, "The destination reported no outcome for it.")
        for change in missing
    ]
    return complete


def _record(
    spec: SyncSpec,
    work: _Work,
    outcomes: Sequence[Outcome],
    ledger: Ledger,
    run_id: int,
    result: SyncResult,
) -> None:
    changes = {change.id: change for change in work.batch.changes}
    settled = []
    for outcome in outcomes:
        change = changes[outcome.change_id]
        settled.append(
            Settled(
                contact=change.key,
                segment=change.segment,
                change=change.kind,
                change_id=change.id,
                action=work.batch.action,
                status=outcome.status.value,
                fields_hash=work.hashes[change.id],
                remote_id=outcome.remote_id,
                kind=outcome.kind.value if outcome.kind else None,
                reason=outcome.reason,
                max_attempts=spec.max_attempts,
                fields=change.fields,
            )
        )
        _count(result, outcome)
    ledger.commit_outcomes(spec.name, run_id, settled)
    result.dead += _newly_dead(ledger, spec, settled)


def _count(result: SyncResult, outcome: Outcome) -> None:
    if outcome.status is OutcomeStatus.DONE:
        result.done += 1
    elif outcome.status is OutcomeStatus.SKIPPED:
        result.skipped += 1
    elif outcome.status is OutcomeStatus.RETRY or outcome.kind is FailureKind.TRANSIENT:
        result.retry += 1
    else:
        result.failed += 1


def _newly_dead(ledger: Ledger, spec: SyncSpec, settled: Sequence[Settled]) -> int:
    failing = {
        (s.segment, s.contact) for s in settled if s.status in ("retry", "failed")
    }
    if not failing:
        return 0
    return len(ledger.dead_letters(spec.name) & failing)
