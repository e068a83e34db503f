"""pqlhub: turn product usage into product-qualified leads, and sync them.

Plugin authors import what they need from here (and test kits from
`pqlhub.testing`); nothing they need lives in a private module.
"""

from __future__ import annotations

from pqlhub.connectors import (
    Action,
    Batch,
    Change,
    Checkpoint,
    CheckResult,
    CompiledRule,
    Condition,
    Destination,
    DestinationContext,
    Entity,
    FailureKind,
    Limits,
    Outcome,
    OutcomeStatus,
    RateLimit,
    Record,
    RejectSink,
    RuleContext,
    RuleType,
    Source,
    SourceCapabilities,
    SourceContext,
)
from pqlhub.errors import (
    DataError,
    ExpressionError,
    FatalSyncError,
    PluginError,
    PqlhubError,
    RecipeError,
    RecipeInvalidError,
    RecipeSyntaxError,
    RetriableSyncError,
    SecretError,
    SkippableSyncError,
    SyncError,
    UnknownPluginError,
)
from pqlhub.hookspecs import hookimpl
from pqlhub.version import __version__

__all__ = [
    "Action",
    "Batch",
    "Change",
    "CheckResult",
    "Checkpoint",
    "CompiledRule",
    "Condition",
    "DataError",
    "Destination",
    "DestinationContext",
    "Entity",
    "ExpressionError",
    "FailureKind",
    "FatalSyncError",
    "Limits",
    "Outcome",
    "OutcomeStatus",
    "PluginError",
    "PqlhubError",
    "RateLimit",
    "RecipeError",
    "RecipeInvalidError",
    "RecipeSyntaxError",
    "Record",
    "RejectSink",
    "RetriableSyncError",
    "RuleContext",
    "RuleType",
    "SecretError",
    "SkippableSyncError",
    "Source",
    "SourceCapabilities",
    "SourceContext",
    "SyncError",
    "UnknownPluginError",
    "__version__",
    "hookimpl",
]
