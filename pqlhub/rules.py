"""The built-in segment-rule types, registered through the same hook as plugins'.

- `where`: an expression in the recipe's expression language (a segment's
  `where = "..."` is this rule).
- `event`: the contact (or its account) did an event at least N times, optionally
  within a window.
- `score`: a weighted sum of profile values, optionally through a logistic link,
  compared with a threshold: the "many actions" kind of trigger.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Final

from pqlhub.connectors import CompiledRule, Condition, RuleContext, RuleType
from pqlhub.hookspecs import hookimpl

__all__ = ["EventRule", "ScoreRule", "WhereRule"]

_DURATION: Final = {
    "$ref": "https://pqlhub.dev/schemas/defs.schema.json#/$defs/duration"
}


class WhereRule(RuleType):
    """A rule written as an expression: `where = "plan == 'trial'"`."""

    name = "where"
    args_schema: ClassVar[Mapping[str, Any]] = {
        "type": "object",
        "properties": {"expression": {"type": "string", "minLength": 1}},
        "required": ["expression"],
        "additionalProperties": False,
    }

    def compile(self, args: Mapping[str, Any], context: RuleContext) -> CompiledRule:
        """Compile the expression."""
        return context.compile_expression(
            args["expression"], f"{context.path}.expression"
        )


class _AtLeast(CompiledRule):
    def __init__(
        self,
        field: str,
        text: str,
        low: int,
        high: int | None,
        read: Callable[[Any], Any],
    ) -> None:
        self.fields = frozenset({field})
        self.field = field
        self.text = text
        self.low = low
        self.high = high
        self.read = read

    def matches(self, profile: Mapping[str, Any]) -> bool:
        count = self.read(profile) or 0
        return bool(count >= self.low and (self.high is None or count <= self.high))

    def explain(self, profile: Mapping[str, Any]) -> list[Condition]:
        count = self.read(profile) or 0
        return [Condition(self.text, {"count": count}, self.matches(profile))]


class EventRule(RuleType):
    """The contact (or its account) did an event at least `min_count` times.

    Arguments: `event` (the event name), `min_count` (default 1), `max_count`
    (optional), `within` (a duration, optional) and `per` (`contact` or `account`).
    """

    name = "event"
    args_schema: ClassVar[Mapping[str, Any]] = {
        "type": "object",
        "properties": {
            "event": {"type": "string", "minLength": 1},
            "min_count": {"type": "integer", "minimum": 0, "default": 1},
            "max_count": {"type": "integer", "minimum": 0},
            "within": _DURATION,
            "per": {"enum": ["contact", "account"], "default": "contact"},
        },
        "required": ["event"],
        "additionalProperties": False,
    }

    def compile(self, args: Mapping[str, Any], context: RuleContext) -> CompiledRule:
        """Ask for the event's count as a trait and compare it with the bounds."""
        definition = {"event": args["event"], "agg": "count"}
        for key in ("within", "per"):
            if key in args:
                definition[key] = args[key]
        field = context.require_trait(definition)
        low = args.get("min_count", 1)
        window = f" within {args['within']}" if "within" in args else ""
        subject = "the account" if args.get("per") == "account" else "the contact"
        text = f"{subject} did {args['event']!r} at least {low} times{window}"
        if "max_count" in args:
            text += f" and at most {args['max_count']} times"
        read = context.reader(field)
        return _AtLeast(field, text, low, args.get("max_count"), read)


class _Score(CompiledRule):
    def __init__(
        self,
        weights: Sequence[tuple[str, float, Callable[[Any], Any]]],
        bias: float,
        logistic: bool,
        threshold: float,
    ) -> None:
        self.fields = frozenset(name for name, _, _ in weights)
        self.weights = weights
        self.bias = bias
        self.logistic = logistic
        self.threshold = threshold

    def score(self, profile: Mapping[str, Any]) -> float:
        total = self.bias
        for _, weight, read in self.weights:
            total += weight * _numeric(read(profile))
        if self.logistic:
            return _sigmoid(total)
        return total

    def matches(self, profile: Mapping[str, Any]) -> bool:
        return self.score(profile) >= self.threshold

    def explain(self, profile: Mapping[str, Any]) -> list[Condition]:
        terms = {name: _numeric(read(profile)) for name, _, read in self.weights}
        score = self.score(profile)
        link = "logistic score" if self.logistic else "score"
        text = f"{link} {score:.3f} >= {self.threshold}"
        return [Condition(text, terms, score >= self.threshold)]


def _numeric(value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return 0.0


def _sigmoid(value: float) -> float:
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exp = math.exp(value)
    return exp / (1.0 + exp)


class ScoreRule(RuleType):
    """A weighted score over profile values, compared with a threshold.

    `score = bias + sum(weight * value)`, passed through `1 / (1 + e^-score)` when
    `link = "logistic"`. Booleans count as 1 or 0; missing and non-numeric values
    count as 0.
    """

    name = "score"
    args_schema: ClassVar[Mapping[str, Any]] = {
        "type": "object",
        "properties": {
            "weights": {
                "type": "object",
                "additionalProperties": {"type": "number"},
                "minProperties": 1,
            },
            "bias": {"type": "number", "default": 0},
            "link": {"enum": ["linear", "logistic"], "default": "linear"},
            "threshold": {"type": "number"},
        },
        "required": ["weights", "threshold"],
        "additionalProperties": False,
    }

    def compile(self, args: Mapping[str, Any], context: RuleContext) -> CompiledRule:
        """Build the scoring function."""
        weights = [
            (name, float(weight), context.reader(name))
            for name, weight in sorted(args["weights"].items())
        ]
        return _Score(
            weights,
            float(args.get("bias", 0)),
            args.get("link") == "logistic",
            float(args["threshold"]),
        )


@hookimpl
def pqlhub_rule_types() -> Sequence[type[RuleType]]:
    """Register the built-in rule types."""
    return [WhereRule, EventRule, ScoreRule]
