"""pqlhub: turn product usage into product-qualified leads, and sync them.

Plugin authors import what they need from here (and test kits from
`pqlhub.testing`). Programs that embed pqlhub load a recipe (`load_recipe`,
`recipe_from_dict`), evaluate it (`evaluate`) and run it (`plan_recipe`,
`run_recipe`), with plugins (`Plugins.of`) and the clock injectable.
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
    MemoryState,
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
    StateStore,
)
from pqlhub.engine import Evaluation, compile_recipe, evaluate
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
from pqlhub.http import HttpClient, RateLimiter, RetryPolicy, TransientHttpError
from pqlhub.plugins import Plugins
from pqlhub.recipe import Recipe, load_recipe, recipe_from_dict
from pqlhub.redaction import Secret
from pqlhub.runs import RunReport, plan_recipe, run_recipe
from pqlhub.segments import Explanation, Segment
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
    "Evaluation",
    "Explanation",
    "ExpressionError",
    "FailureKind",
    "FatalSyncError",
    "HttpClient",
    "Limits",
    "MemoryState",
    "Outcome",
    "OutcomeStatus",
    "PluginError",
    "Plugins",
    "PqlhubError",
    "RateLimit",
    "RateLimiter",
    "Recipe",
    "RecipeError",
    "RecipeInvalidError",
    "RecipeSyntaxError",
    "Record",
    "RejectSink",
    "RetriableSyncError",
    "RetryPolicy",
    "RuleContext",
    "RuleType",
    "RunReport",
    "Secret",
    "SecretError",
    "Segment",
    "SkippableSyncError",
    "Source",
    "SourceCapabilities",
    "SourceContext",
    "StateStore",
    "SyncError",
    "TransientHttpError",
    "UnknownPluginError",
    "__version__",
    "compile_recipe",
    "evaluate",
    "hookimpl",
    "load_recipe",
    "plan_recipe",
    "recipe_from_dict",
    "run_recipe",
]
