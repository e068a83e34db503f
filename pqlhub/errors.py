"""The errors pqlhub raises, grouped by what the caller should do about them.

Every error derives from `PqlhubError`. The tree::

    PqlhubError
    ├── RecipeError              the recipe or a config block is wrong: fix the recipe
    │   ├── RecipeSyntaxError    the TOML does not parse (file, line, column)
    │   ├── RecipeInvalidError   one or more problems, each with its key path
    │   ├── SecretError          a secret reference cannot be resolved
    │   └── ExpressionError      an expression does not parse or compile (column)
    ├── PluginError              a plugin is missing, broken or misbehaving
    │   └── UnknownPluginError   no installed plugin provides the connector named
    ├── DataError                a source record is malformed (file and line)
    └── SyncError                delivering to a destination went wrong
        ├── FatalSyncError       stop the sync now (bad credentials, missing scope)
        ├── RetriableSyncError   try again later (timeouts, 429, 5xx)
        └── SkippableSyncError   this record cannot be delivered; the rest can

Messages are sentences that name the culprit, what was expected and what was found.
They never contain a secret's value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DataError",
    "ExpressionError",
    "FatalSyncError",
    "PluginError",
    "PqlhubError",
    "Problem",
    "RecipeError",
    "RecipeInvalidError",
    "RecipeSyntaxError",
    "RetriableSyncError",
    "SecretError",
    "SkippableSyncError",
    "SyncError",
    "UnknownPluginError",
]


class PqlhubError(Exception):
    """The root of every error pqlhub raises on purpose."""


class RecipeError(PqlhubError):
    """The recipe, or a connector's block in it, is wrong."""


class RecipeSyntaxError(RecipeError):
    """The recipe file is not valid TOML.

    Attributes:
        path: The recipe file.
        line: The 1-based line of the fault.
        column: The 1-based column of the fault.
    """

    def __init__(self, path: str, line: int, column: int, reason: str) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.reason = reason
        super().__init__(
            f"Recipe {path} is not valid TOML: {reason} (line {line}, column {column})."
        )


@dataclass(frozen=True)
class Problem:
    """One fault found while checking a recipe.

    Attributes:
        path: The key path of the fault, dotted (`segments.qualified.where`).
        message: A sentence saying what is wrong there.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(top level)'}: {self.message}"


class RecipeInvalidError(RecipeError):
    """The recipe has one or more problems; all of them are listed.

    Attributes:
        source: The recipe file, or a short description when it came from a dict.
        problems: Every problem found, in key-path order.
    """

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"Recipe {source} is invalid ({count} {noun})."]
        lines.extend(f"  {problem}" for problem in self.problems)
        super().__init__("\n".join(lines))


class SecretError(RecipeError):
    """A secret reference points at an unset variable or an unreadable file."""


class ExpressionError(RecipeError):
    """An expression in the recipe does not parse or does not compile.

    Attributes:
        expression: The expression text.
        column: The 1-based column of the fault within the expression.
        reason: What is wrong, without the location.
    """

    def __init__(self, expression: str, column: int, reason: str) -> None:
        self.expression = expression
        self.column = column
        self.reason = reason
        super().__init__(f"{reason} (column {column})")


class PluginError(PqlhubError):
    """A plugin is missing, failed to load, or broke its contract."""


class UnknownPluginError(PluginError):
    """No installed plugin provides the connector a recipe names."""


class DataError(PqlhubError):
    """A record read from a source is malformed.

    Attributes:
        file: The file (or request) the record came from.
        line: The 1-based line of the record, when it has one.
        reason: What is wrong with the record.
    """

    def __init__(self, file: str, line: int | None, reason: str) -> None:
        self.file = file
        self.line = line
        self.reason = reason
        where = f"{file}, line {line}" if line is not None else file
        super().__init__(f"{where}: {reason}")


class SyncError(PqlhubError):
    """Delivering changes to a destination failed."""


class FatalSyncError(SyncError):
    """The sync cannot go on: credentials, scopes or config must be fixed first."""


class RetriableSyncError(SyncError):
    """A transient failure: the same request may succeed later.

    Attributes:
        retry_after: Seconds the destination asked us to wait, when it said.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class SkippableSyncError(SyncError):
    """One record cannot be delivered; the others in its batch can."""
