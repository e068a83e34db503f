"""The base classes a plugin subclasses to add a source, a rule type or a destination.

A connector class declares, as class attributes, its `name` (what a recipe writes in
`plugin = "..."` or `type = "..."`), the JSON Schema of its configuration, and what it
can do. The core validates the recipe block against that schema before it builds the
connector, so a connector's constructor may trust the shape of its config.

The values that cross the boundary are plain: records are dicts, checkpoints and
changes are small frozen dataclasses, and outcomes say per change what happened.
"""

from __future__ import annotations

import enum
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import (
    Callable,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pqlhub.errors import DataError
from pqlhub.http import HttpClient

__all__ = [
    "Action",
    "Batch",
    "Change",
    "CheckResult",
    "Checkpoint",
    "CompiledRule",
    "Condition",
    "Destination",
    "DestinationContext",
    "Entity",
    "FailureKind",
    "Limits",
    "MemoryState",
    "Outcome",
    "OutcomeStatus",
    "RateLimit",
    "Record",
    "RejectSink",
    "RuleContext",
    "RuleType",
    "Source",
    "SourceCapabilities",
    "SourceContext",
    "StateStore",
]

Entity = Literal["contact", "account", "event"]
"""What a source's records describe: a person, a company, or something a person did."""

Record = dict[str, Any]
"""One record as a source yields it: field name to value."""

JSONSchema = Mapping[str, Any]


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Checkpoint:
    """A point in a source's stream from which a later read can resume.

    A source yields a checkpoint after the records it covers. The core stores the
    cursor only once those records are processed and their deliveries committed, and
    passes it back to `Source.read` on the next run.

    Attributes:
        cursor: Any JSON-serialisable value the source understands (an offset, a
            timestamp, a dict of per-file positions).
    """

    cursor: Any


@dataclass(frozen=True)
class SourceCapabilities:
    """What a source can do.

    Attributes:
        entities: The entities the source can read.
        incremental: Whether `read` can resume from a cursor it checkpointed.
        ordered: Whether records arrive in cursor order (so a checkpoint covers
            every record before it).
    """

    entities: frozenset[Entity]
    incremental: bool = False
    ordered: bool = False


class RejectSink(ABC):
    """Where a source puts records it could not read, so that nothing is lost."""

    @abstractmethod
    def reject(self, file: str, line: int | None, reason: str, raw: str) -> None:
        """Keep one bad record.

        Args:
            file: The file (or request) the record came from.
            line: Its 1-based line, when it has one.
            reason: What was wrong with it.
            raw: The record as it was read, unparsed.
        """


@dataclass
class SourceContext:
    """What the core tells a source about the recipe block it serves.

    Attributes:
        name: The block's name in the recipe (`users` for `[sources.users]`).
        entity: The entity the block reads.
        key: The field that identifies a contact or an account (None for events).
        base_dir: The recipe's folder; relative paths in the config are relative to it.
        on_error: What to do with a malformed record: `fail` or `skip`.
        rejects: Where skipped records go.
        logger: The logger the source should use.
        fields: The record fields the recipe reads, the key included, when the
            core knows them; a source may leave other fields out of its records
            (and skip converting them). None when every field is wanted.
    """

    name: str
    entity: Entity
    key: str | None
    base_dir: Path
    on_error: Literal["fail", "skip"]
    rejects: RejectSink
    logger: logging.Logger
    fields: frozenset[str] | None = None
    skipped: int = 0

    def bad_record(self, file: str, line: int | None, reason: str, raw: str) -> None:
        """Apply the block's `on_error` policy to one malformed record.

        With `fail` this raises; with `skip` it counts the record, keeps it in the
        rejects file and returns, and the source goes on with the next record.

        Args:
            file: The file (or request) the record came from.
            line: Its 1-based line, when it has one.
            reason: What was wrong with it, as a sentence.
            raw: The record as it was read.

        Raises:
            DataError: When the policy is `fail`.
        """
        if self.on_error == "fail":
            raise DataError(file, line, reason)
        self.skipped += 1
        self.rejects.reject(file, line, reason, raw)
        self.logger.warning(
            "Skipped a bad record in %s at line %s: %s", file, line, reason
        )

    def resolve(self, path: str) -> Path:
        """Return `path` made absolute against the recipe's folder."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate


class Source(ABC):
    """A connector that reads records of one entity.

    Subclasses set `name`, `config_schema` and `capabilities`, and implement `read`.
    The constructor receives the recipe block (without the core's own keys `plugin`,
    `entity`, `key` and `on_error`, which are in the context) after it passed
    `config_schema`, with secret references already resolved to `Secret` values.
    """

    name: ClassVar[str]
    config_schema: ClassVar[JSONSchema] = {"type": "object"}
    capabilities: ClassVar[SourceCapabilities]

    def __init__(self, config: Mapping[str, Any], context: SourceContext) -> None:
        self.config = config
        self.context = context

    @abstractmethod
    def read(self, cursor: Any = None) -> Iterator[Record | Checkpoint]:
        """Yield the block's records, and checkpoints between them.

        Malformed records go through `self.context.bad_record`, never silently
        dropped.

        Args:
            cursor: The last checkpoint's cursor committed for this block, or None
                to read from the start.
        """

    def check(self) -> list[CheckResult]:
        """Verify that the source can be read, without reading it all.

        Returns:
            One result per thing checked; empty when there is nothing to check.
        """
        return []


# ----------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Condition:
    """One part of a rule's decision, for `explain`.

    Attributes:
        text: The condition as the recipe wrote it (`account.api_calls >= 500`).
        values: The profile values the condition read, by name.
        result: Whether the condition held.
    """

    text: str
    values: Mapping[str, Any]
    result: bool


class CompiledRule(ABC):
    """A rule compiled once, then evaluated against each profile."""

    fields: frozenset[str] = frozenset()
    """The profile values the rule reads (`job_role`, `account.api_calls`, ...)."""

    @abstractmethod
    def matches(self, profile: Mapping[str, Any]) -> bool:
        """Return whether the profile satisfies the rule."""

    def explain(self, profile: Mapping[str, Any]) -> list[Condition]:
        """Return the conditions that decided `matches` for this profile."""
        values = {name: profile.get(name) for name in sorted(self.fields)}
        return [Condition(type(self).__name__, values, self.matches(profile))]

    def to_sql(self) -> str | None:
        """Return the rule as a SQL boolean expression, or None when it has none."""
        return None


class RuleContext(ABC):
    """What the core offers a rule type while it compiles."""

    path: str
    """The recipe key path of the rule, for error messages."""

    @abstractmethod
    def compile_expression(self, text: str, path: str) -> CompiledRule:
        """Compile an expression in the recipe's expression language.

        Args:
            text: The expression.
            path: Its key path, for error messages.

        Raises:
            ExpressionError: When the expression does not parse or compile.
        """

    @abstractmethod
    def reader(self, field: str) -> Callable[[Mapping[str, Any]], Any]:
        """Return a fast function reading one profile value.

        Reading through it is faster than `profile.get(field)`, which matters
        when a rule runs over millions of profiles. It returns None when the
        profile has no such value.

        Args:
            field: A profile field (`job_role`, `account.api_calls`, a trait).
        """

    @abstractmethod
    def require_trait(self, definition: Mapping[str, Any]) -> str:
        """Ask for a trait the rule needs, computed like one the recipe declares.

        Args:
            definition: A trait definition in the recipe's `[traits]` form, for
                example `{"event": "api_call", "agg": "count", "within": "7d"}`.

        Returns:
            The profile field under which the trait's value will be found.
        """


class RuleType(ABC):
    """A kind of segment rule, written in a recipe as `rule = { type = "...", ... }`."""

    name: ClassVar[str]
    args_schema: ClassVar[JSONSchema] = {"type": "object"}

    @abstractmethod
    def compile(self, args: Mapping[str, Any], context: RuleContext) -> CompiledRule:
        """Compile the rule's arguments into a predicate over profiles.

        Args:
            args: The rule's table from the recipe (without `type`), already
                validated against `args_schema`.
            context: Services for compiling, and the rule's key path.

        Raises:
            RecipeError: When the arguments are valid by schema but meaningless.
        """


# ---------------------------------------------------------------------- destinations


@dataclass(frozen=True)
class Action:
    """Something a destination can do when a contact enters or leaves a segment.

    Attributes:
        name: What a sync writes in `on_enter = { action = "..." }`.
        description: One sentence for `pqlhub plugins` and the docs.
        on: Where the action may be used: on enter, on exit, or both.
        args_schema: The JSON Schema of the action's options in the recipe.
        batch_size: The most changes one request may carry, when it differs from
            the destination's `Limits.batch_size`.
    """

    name: str
    description: str
    on: frozenset[Literal["enter", "exit"]] = frozenset({"enter", "exit"})
    args_schema: JSONSchema = field(default_factory=lambda: {"type": "object"})
    batch_size: int | None = None


@dataclass(frozen=True)
class RateLimit:
    """At most `requests` requests in any window of `per_seconds` seconds."""

    requests: int
    per_seconds: float


@dataclass(frozen=True)
class Limits:
    """How hard a destination may be driven.

    Attributes:
        batch_size: The most changes in one `apply` call.
        concurrency: How many `apply` calls may run at once.
        rate: The request rate the vendor allows, when it has one.
        min_audience: The smallest audience the vendor accepts, when it has one.
    """

    batch_size: int = 100
    concurrency: int = 1
    rate: RateLimit | None = None
    min_audience: int | None = None


@dataclass(frozen=True)
class Change:
    """One change a sync asks a destination to make for one contact.

    Attributes:
        id: A stable id for this change (the same enter of the same contact in the
            same segment always has the same id), so receivers can deduplicate.
        key: The contact's key.
        segment: The segment's expanded name.
        kind: `enter`, `exit`, or `update` (fields changed, membership did not).
        fields: The sync's mapped fields, as sent.
    """

    id: str
    key: str
    segment: str
    kind: Literal["enter", "exit", "update"]
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class Batch:
    """Changes of one sync that share an action, to apply together.

    Attributes:
        sync: The sync's name.
        action: The action's name.
        options: The action's options from the recipe.
        changes: The changes, at most the action's batch size.
    """

    sync: str
    action: str
    options: Mapping[str, Any]
    changes: Sequence[Change]


class OutcomeStatus(enum.Enum):
    """What happened to one change."""

    DONE = "done"
    SKIPPED = "skipped"
    RETRY = "retry"
    FAILED = "failed"


class FailureKind(enum.Enum):
    """Why a change failed, which decides what the sync does next."""

    CONFIG = "config"
    """Credentials, scopes or settings are wrong: the sync stops."""

    TRANSIENT = "transient"
    """The vendor could not take it now: retried on a later run."""

    DATA = "data"
    """This record is unacceptable to the vendor: kept as a failure, others go on."""


@dataclass(frozen=True)
class Outcome:
    """The result of one change.

    Build one with the class methods: `Outcome.done(change)`,
    `Outcome.failed(change, FailureKind.DATA, "...")`, and so on.

    Attributes:
        change_id: The `Change.id` this outcome is for.
        status: What happened.
        kind: Why it failed, for `FAILED` (and `RETRY`, which is transient).
        reason: A sentence for the user, for anything but `DONE`.
        remote_id: The destination's own id for the contact, when it told us.
    """

    change_id: str
    status: OutcomeStatus
    kind: FailureKind | None = None
    reason: str | None = None
    remote_id: str | None = None

    @classmethod
    def done(cls, change: Change, remote_id: str | None = None) -> Outcome:
        """The destination confirmed the change."""
        return cls(change.id, OutcomeStatus.DONE, remote_id=remote_id)

    @classmethod
    def skipped(cls, change: Change, reason: str) -> Outcome:
        """The change needed nothing done (already so, or not applicable)."""
        return cls(change.id, OutcomeStatus.SKIPPED, reason=reason)

    @classmethod
    def retry(cls, change: Change, reason: str) -> Outcome:
        """The change should be sent again later."""
        return cls(change.id, OutcomeStatus.RETRY, FailureKind.TRANSIENT, reason)

    @classmethod
    def failed(cls, change: Change, kind: FailureKind, reason: str) -> Outcome:
        """The change failed for the given kind of reason."""
        return cls(change.id, OutcomeStatus.FAILED, kind, reason)


@dataclass(frozen=True)
class CheckResult:
    """One thing `pqlhub check` verified.

    Attributes:
        name: What was checked (`token`, `scope crm.lists.write`, `file readable`).
        ok: Whether it passed.
        message: A sentence on what was found, and what to do when it failed.
    """

    name: str
    ok: bool
    message: str


class StateStore(MutableMapping[str, str]):
    """A destination's small key-value store, kept across runs.

    Besides the mapping interface it reads and writes many keys at once, for
    caches of remote ids that a batch consults in one go.
    """

    @abstractmethod
    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """Return the values of those `keys` that are set."""


class MemoryState(StateStore):
    """A `StateStore` in memory, for embedding and tests; runs use the ledger's."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __setitem__(self, key: str, value: str) -> None:
        self._values[key] = value

    def __delitem__(self, key: str) -> None:
        del self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._values))

    def __len__(self) -> int:
        return len(self._values)

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """Return the values of those `keys` that are set."""
        return {key: self._values[key] for key in keys if key in self._values}


@dataclass
class DestinationContext:
    """What the core tells a destination about the recipe block it serves.

    Attributes:
        name: The block's name in the recipe (`crm` for `[destinations.crm]`).
        base_dir: The recipe's folder; relative paths are relative to it.
        logger: The logger the destination should use.
        state: A small key-value store kept in the ledger for this destination
            (remote ids, created list ids), surviving across runs; each write
            is committed at once.
        clock: Returns the current time as a Unix timestamp.
        http_factory: Builds HTTP clients with the run's retry policy and rate
            limiter; use `http()` rather than calling it.
    """

    name: str
    base_dir: Path
    logger: logging.Logger
    state: StateStore = field(default_factory=MemoryState)
    clock: Callable[[], float] = time.time
    http_factory: Callable[..., HttpClient] | None = field(default=None, repr=False)

    def http(
        self,
        base_url: str = "",
        headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> HttpClient:
        """Return an HTTP client with pqlhub's timeouts, retries, limits and logs.

        Args:
            base_url: The prefix of every request's URL.
            headers: Headers for every request, credentials included (never
                logged).
            **options: Further `HttpClient` arguments (`timeout`, `classify`,
                `fatal_hint`, `transport`), and `rate`: a `RateLimit` to use
                instead of the class's `limits.rate` (for rates set in config).
        """
        if self.http_factory is not None:
            return self.http_factory(base_url=base_url, headers=headers, **options)
        options.pop("rate", None)
        return HttpClient(self.name, base_url=base_url, headers=headers, **options)


class Destination(ABC):
    """A connector that receives changes: a CRM, a support tool, an ad audience, a file.

    Subclasses set `name`, `config_schema`, `actions` and `limits`, and implement
    `apply`. Every action must be idempotent: a batch that was in flight during a
    crash is sent again, and sending it twice must leave the destination as sending
    it once would.
    """

    name: ClassVar[str]
    config_schema: ClassVar[JSONSchema] = {"type": "object"}
    actions: ClassVar[Mapping[str, Action]]
    limits: ClassVar[Limits] = Limits()

    def __init__(self, config: Mapping[str, Any], context: DestinationContext) -> None:
        self.config = config
        self.context = context

    @abstractmethod
    def apply(self, batch: Batch) -> Sequence[Outcome]:
        """Apply one batch of changes and report what happened to each.

        Returns:
            Exactly one outcome per change in the batch, in any order.

        Raises:
            FatalSyncError: When nothing can be sent (credentials, scopes); the
                sync stops and its pending changes stay pending.
            RetriableSyncError: When the whole batch failed transiently.
        """

    def batch_size(self, action: str) -> int:
        """Return the most changes one `apply` call of `action` may carry.

        By default the action's own `batch_size`, else `limits.batch_size`.
        Override it when the size depends on the block's config.
        """
        return self.actions[action].batch_size or self.limits.batch_size

    def check(self) -> list[CheckResult]:
        """Verify credentials and settings against the vendor, changing nothing."""
        return []

    def close(self) -> None:  # noqa: B027 (optional to override)
        """Release connections and flush files; called once after the last batch."""
