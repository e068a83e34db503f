"""Dimensions and segments: compiling the recipe's rules once, then sorting profiles.

A dimension is a groupable value of a profile: a field, a bucketed number, or the
first of a list of cases that holds. A segment has an id (its key in the recipe), a
name template and rules; `{dimension}` placeholders in the name expand it into one
segment per combination of dimension values among its members. Every segment
reports its size; one below its minimum is flagged, and held back from syncs when
the recipe enforces the minimum.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson

from pqlhub.connectors import CompiledRule, Condition, RuleContext
from pqlhub.errors import ExpressionError, Problem, RecipeError, RecipeInvalidError
from pqlhub.expressions import ValueType, compile_expression
from pqlhub.plugins import Plugins
from pqlhub.profiles import Profile, ProfileTable, TraitSpec, trait_from_definition
from pqlhub.schemas import validate

__all__ = [
    "Dimension",
    "Explanation",
    "Segment",
    "SegmentDefinition",
    "SegmentVerdict",
    "bucket_labels",
]

BELOW_MIN_SIZE: Final = "below_min_size"
HELD_BACK: Final = "held_back"

Resolver = Callable[[str], Callable[[Any], Any]]


# ----------------------------------------------------------------------- dimensions


def bucket_labels(bounds: Sequence[float]) -> list[str]:
    """Return the labels of buckets with these ascending lower bounds.

    Whole-number bounds give `0`, `1-4`, `5-9`, `10+` for `[0, 1, 5, 10]`; other
    bounds give ranges such as `0.5-<1.5`.
    """
    whole = all(float(bound).is_integer() for bound in bounds)
    labels = []
    for low, high in zip(bounds, [*bounds[1:], None], strict=True):
        if high is None:
            labels.append(f"{_number(low)}+")
        elif whole and high - low == 1:
            labels.append(_number(low))
        elif whole:
            labels.append(f"{_number(low)}-{_number(high - 1)}")
        else:
            labels.append(f"{_number(low)}-<{_number(high)}")
    return labels


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class Dimension:
    """A groupable value of a profile, computed into a column.

    Attributes:
        name: The dimension's name, used in templates and rules.
        field: The profile field it reads, for field and bucket dimensions.
        buckets: Ascending lower bounds, for bucket dimensions.
        labels: One label per bucket.
        cases: The `(rule, value)` pairs of a case dimension, first match wins.
        default: The value when no case holds or the field is missing.
        max_values: The most distinct values it may take.
    """

    name: str
    field: str | None
    buckets: tuple[float, ...] | None
    labels: tuple[str, ...]
    cases: tuple[tuple[CompiledRule, str], ...]
    default: str | None
    max_values: int

    @property
    def fields(self) -> frozenset[str]:
        """The profile fields the dimension reads."""
        if self.field is not None:
            return frozenset({self.field})
        return frozenset().union(*(rule.fields for rule, _ in self.cases))

    def compute(self, table: ProfileTable) -> list[str | None]:
        """Return the dimension's value for every contact of the table."""
        if self.field is not None:
            return self._from_column(table.values_of(self.field))
        profile = Profile(table)
        values: list[str | None] = []
        value_of = self._value_function(table)
        for row in range(len(table)):
            profile.row = row
            values.append(value_of(profile))
        return values

    def _from_column(self, column: Sequence[Any]) -> list[str | None]:
        # A field's values repeat (roles, counts), so each distinct value is
        # turned into its label once.
        label_of = self._value_function(None)
        labels: dict[tuple[type, Any], str | None] = {}
        out: list[str | None] = []
        append = out.append
        for value in column:
            # Keyed by type too: True == 1 == 1.0, but their labels differ.
            key = (value.__class__, value)
            try:
                label = labels[key]
            except KeyError:
                label = labels[key] = label_of(value)
            except TypeError:  # an unhashable value, such as a list
                label = label_of(value)
            append(label)
        return out

    def _value_function(
        self, table: ProfileTable | None
    ) -> Callable[[Any], str | None]:
        """Return the function from a profile (cases) or a field value to a label."""
        default = self.default
        if self.field is None:
            cases = self.cases

            def case_value(profile: Profile) -> str | None:
                for rule, value in cases:
                    if rule.matches(profile):
                        return value
                return default

            return case_value

        if self.buckets is None:

            def field_value(value: Any) -> str | None:
                return default if value is None or value == "" else str(value)

            return field_value

        bounds, labels = self.buckets, self.labels

        def bucket_value(value: Any) -> str | None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return default
            label = default
            for bound, name in zip(bounds, labels, strict=True):
                if value < bound:
                    break
                label = name
            return label

        return bucket_value

    def check_groupable(self, values: Iterable[str | None]) -> None:
        """Raise when the column holds more distinct values than the limit."""
        distinct = {value for value in values if value is not None}
        if len(distinct) <= self.max_values:
            return
        message = (
            f"Dimension {self.name!r} has {len(distinct):,} distinct values, more "
            f"than its limit of {self.max_values}. Segments need groupable data: "
            "group the values with buckets or cases, or raise max_values if this "
            "many segments is really meant."
        )
        raise RecipeInvalidError(
            "the recipe", [Problem(f"dimensions.{self.name}", message)]
        )


# ------------------------------------------------------------------------- segments


@dataclass(frozen=True)
class SegmentDefinition:
    """A segment as the recipe defines it, rules compiled.

    Attributes:
        id: The segment's key in the recipe.
        template: The name, with `{dimension}` placeholders.
        placeholders: The dimensions the name uses, in order.
        rules: Every rule a member satisfies (none: everyone is a member).
        min_size: The smallest size worth a campaign.
        enforce_min_size: Whether a smaller segment is held back from syncs.
        description: What the segment is for, if the recipe says.
    """

    id: str
    template: str
    placeholders: tuple[str, ...]
    rules: tuple[CompiledRule, ...]
    min_size: int
    enforce_min_size: bool
    description: str | None = None

    @property
    def fields(self) -> frozenset[str]:
        """The profile fields the segment's rules read."""
        return frozenset().union(*(rule.fields for rule in self.rules))

    def matcher(self) -> Callable[[Profile], bool]:
        """Return a function telling whether a profile satisfies every rule."""
        if not self.rules:
            return lambda profile: True
        if len(self.rules) == 1:
            return self.rules[0].matches
        checks = [rule.matches for rule in self.rules]
        return lambda profile: all(check(profile) for check in checks)

    def name_for(self, values: Sequence[str]) -> str:
        """Return the expanded name for dimension values in placeholder order."""
        return self.template.format_map(
            dict(zip(self.placeholders, values, strict=True))
        )


@dataclass(frozen=True)
class Segment:
    """One expanded segment and its members.

    Attributes:
        id: The segment definition's id (its key in the recipe).
        name: The expanded name.
        template: The name template it came from.
        values: The dimension values in its name.
        members: The members' contact keys, sorted.
        min_size: Its minimum size.
        enforce_min_size: Whether being smaller holds it back from syncs.
    """

    id: str
    name: str
    template: str
    values: Mapping[str, str]
    members: tuple[str, ...]
    min_size: int
    enforce_min_size: bool

    @property
    def size(self) -> int:
        """The number of members."""
        return len(self.members)

    @property
    def flags(self) -> list[str]:
        """`below_min_size`, and `held_back` when the minimum is enforced."""
        if self.size >= self.min_size:
            return []
        return (
            [BELOW_MIN_SIZE, HELD_BACK] if self.enforce_min_size else [BELOW_MIN_SIZE]
        )

    @property
    def held_back(self) -> bool:
        """Whether syncs leave this segment out."""
        return HELD_BACK in self.flags

    @property
    def reason(self) -> str | None:
        """Why the segment is flagged, as a sentence, or None."""
        if not self.flags:
            return None
        text = f"{self.size:,} members, below the minimum of {self.min_size:,}"
        return f"{text}; held back from syncs." if self.held_back else f"{text}."

    def as_dict(self, members: bool = False) -> dict[str, Any]:
        """Return the segment as JSON-ready values."""
        entry: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "template": self.template,
            "values": dict(self.values),
            "size": self.size,
            "min_size": self.min_size,
            "flags": self.flags,
            "reason": self.reason,
        }
        if members:
            entry["members"] = list(self.members)
        return entry


def sort_into_segments(
    table: ProfileTable,
    definitions: Iterable[SegmentDefinition],
    dimensions: Sequence[Dimension],
    dimension_columns: Mapping[str, list[str | None]],
) -> list[Segment]:
    """Evaluate every segment over every profile and expand the templates."""
    profile = Profile(table)
    keys = table.keys
    segments: list[Segment] = []
    for definition in definitions:
        matches = definition.matcher()
        order = _value_order(dimensions, definition.placeholders)
        columns = [dimension_columns[name] for name in definition.placeholders]
        groups: dict[tuple[str, ...], list[str]] = {}
        for row in range(len(table)):
            profile.row = row
            if not matches(profile):
                continue
            values = tuple(column[row] for column in columns)
            if None in values:
                continue
            groups.setdefault(values, []).append(keys[row])  # type: ignore[arg-type]
        if not groups and not definition.placeholders:
            groups[()] = []
        for values in sorted(groups, key=order):
            segments.append(_segment(definition, values, groups[values]))
    return segments


def _value_order(
    dimensions: Iterable[Dimension], placeholders: Sequence[str]
) -> Callable[[tuple[str, ...]], tuple[tuple[int, str], ...]]:
    # Bucket labels sort in bucket order (0, 1-4, 5-9, 10+), other values by name.
    ranks = {d.name: {label: i for i, label in enumerate(d.labels)} for d in dimensions}

    def key(values: tuple[str, ...]) -> tuple[tuple[int, str], ...]:
        return tuple(
            (ranks.get(name, {}).get(value, -1), value)
            for name, value in zip(placeholders, values, strict=True)
        )

    return key


def _segment(
    definition: SegmentDefinition, values: tuple[str, ...], members: list[str]
) -> Segment:
    return Segment(
        id=definition.id,
        name=definition.name_for(values),
        template=definition.template,
        values=dict(zip(definition.placeholders, values, strict=True)),
        members=tuple(sorted(members)),
        min_size=definition.min_size,
        enforce_min_size=definition.enforce_min_size,
    )


# -------------------------------------------------------------------------- explain


@dataclass(frozen=True)
class SegmentVerdict:
    """Whether one contact is in one segment definition, and why.

    Attributes:
        id: The segment definition's id.
        name: The expanded segment the contact is (or would be) in, if every
            placeholder has a value.
        matched: Whether the contact is a member.
        conditions: What each rule's conditions saw.
        reason: Why it is out despite the rules, when that is the case.
    """

    id: str
    name: str | None
    matched: bool
    conditions: tuple[Condition, ...]
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the verdict as JSON-ready values."""
        return {
            "id": self.id,
            "name": self.name,
            "matched": self.matched,
            "reason": self.reason,
            "conditions": [
                {"text": c.text, "values": _plain(c.values), "result": c.result}
                for c in self.conditions
            ],
        }


@dataclass(frozen=True)
class Explanation:
    """Why a contact is in or out of each segment.

    Attributes:
        key: The contact's key.
        values: The profile values the rules and dimensions read.
        dimensions: The contact's dimension values.
        verdicts: One verdict per segment definition.
    """

    key: str
    values: Mapping[str, Any]
    dimensions: Mapping[str, str | None]
    verdicts: tuple[SegmentVerdict, ...]

    def as_dict(self) -> dict[str, Any]:
        """Return the explanation as JSON-ready values."""
        return {
            "key": self.key,
            "values": _plain(self.values),
            "dimensions": dict(self.dimensions),
            "segments": [verdict.as_dict() for verdict in self.verdicts],
        }


def explain_profile(
    profile: Profile,
    definitions: Sequence[SegmentDefinition],
    dimension_columns: Mapping[str, list[str | None]],
    names: Iterable[str],
) -> Explanation:
    """Explain, for one profile, every segment's decision."""
    row = profile.row
    dimensions = {name: column[row] for name, column in dimension_columns.items()}
    verdicts = []
    for definition in definitions:
        conditions: list[Condition] = []
        for rule in definition.rules:
            conditions.extend(rule.explain(profile))
        passed = all(rule.matches(profile) for rule in definition.rules)
        placed = [dimensions.get(name) for name in definition.placeholders]
        missing = [
            n for n, v in zip(definition.placeholders, placed, strict=True) if v is None
        ]
        name = None if missing else definition.name_for(placed)  # type: ignore[arg-type]
        reason = None
        if passed and missing:
            reason = (
                "No value for dimension " + ", ".join(repr(n) for n in missing) + "."
            )
        verdicts.append(
            SegmentVerdict(
                definition.id, name, passed and not missing, tuple(conditions), reason
            )
        )
    values = {name: profile.table.getter(name)(profile) for name in sorted(names)}
    return Explanation(profile.key, values, dimensions, tuple(verdicts))


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(dict(values), default=str))  # type: ignore[no-any-return]


# ------------------------------------------------------------------------ compiling


@dataclass
class Compiled:
    """The recipe's traits, dimensions and segments, compiled.

    Attributes:
        traits: Every trait to compute, the recipe's and those rules asked for.
        dimensions: The dimensions in recipe order.
        segments: The segment definitions in recipe order.
        syncs: The syncs (`pqlhub.plan.SyncSpec`), validated.
    """

    traits: dict[str, TraitSpec]
    dimensions: list[Dimension]
    segments: list[SegmentDefinition]
    syncs: list[Any] = field(default_factory=list)

    @property
    def sync_fields(self) -> frozenset[str]:
        """Every profile field the syncs send."""
        return frozenset(
            source for sync in self.syncs for source in sync.fields.values()
        )

    @property
    def fields(self) -> frozenset[str]:
        """Every profile field the dimensions and segments read."""
        found: set[str] = set()
        for dimension in self.dimensions:
            found |= dimension.fields
        for segment in self.segments:
            found |= segment.fields
        return frozenset(found)


@dataclass
class SegmentCompiler:
    """Compiles a recipe's dimensions and segments, collecting every problem.

    Attributes:
        data: The recipe's plain values.
        plugins: Where rule types come from.
        traits: The recipe's traits; rules may add more.
        resolve: Turns a profile field name into a reader.
        now: The run's time, for expressions that use `now()`.
        min_size: The default minimum segment size.
        max_dimension_values: The default limit on a dimension's values.
    """

    data: Mapping[str, Any]
    plugins: Plugins
    traits: dict[str, TraitSpec]
    resolve: Resolver
    now: Callable[[], datetime]
    min_size: int
    max_dimension_values: int
    problems: list[Problem] = field(default_factory=list)

    def compile(self, origin: str) -> Compiled:
        """Compile everything, raising one error that lists every problem."""
        dimensions = self._dimensions()
        segments = self._segments({d.name for d in dimensions})
        if self.problems:
            raise RecipeInvalidError(origin, self.problems)
        return Compiled(self.traits, dimensions, segments)

    def expression(self, text: str, path: str) -> CompiledRule | None:
        """Compile one expression, recording a problem when it is wrong."""
        try:
            return compile_expression(
                text, resolve=self.resolve, types=self._types(), now=self.now
            )
        except ExpressionError as exc:
            self.problems.append(Problem(path, f"{exc.reason} (column {exc.column})"))
            return None

    def _types(self) -> dict[str, ValueType]:
        types: dict[str, ValueType] = {}
        for spec in self.traits.values():
            if spec.value_type is not None:
                types[spec.field] = spec.value_type  # type: ignore[assignment]
        for name in self.data.get("dimensions", {}):
            types[name] = "string"
        return types

    def _dimensions(self) -> list[Dimension]:
        dimensions = []
        for name, table in self.data.get("dimensions", {}).items():
            dimension = self._dimension(name, table, f"dimensions.{name}")
            if dimension is not None:
                dimensions.append(dimension)
        return dimensions

    def _dimension(
        self, name: str, table: Mapping[str, Any], path: str
    ) -> Dimension | None:
        if name in self.traits:
            self.problems.append(
                Problem(path, f"The name {name!r} is taken by a trait; rename one.")
            )
            return None
        buckets = table.get("buckets")
        labels = tuple(
            table.get("labels") or (bucket_labels(buckets) if buckets else ())
        )
        if buckets and sorted(buckets) != list(buckets):
            self.problems.append(
                Problem(f"{path}.buckets", "Bounds must be ascending.")
            )
        if buckets and len(labels) != len(buckets):
            self.problems.append(
                Problem(
                    f"{path}.labels",
                    f"Expected {len(buckets)} labels, one per bucket, "
                    f"found {len(labels)}.",
                )
            )
        cases = []
        for index, case in enumerate(table.get("cases", [])):
            rule = self.expression(case["when"], f"{path}.cases[{index}].when")
            if rule is not None:
                cases.append((rule, case["value"]))
        dimension = Dimension(
            name=name,
            field=table.get("field"),
            buckets=tuple(buckets) if buckets else None,
            labels=labels,
            cases=tuple(cases),
            default=table.get("default"),
            max_values=table.get("max_values", self.max_dimension_values),
        )
        if name in dimension.fields:
            # Rules read a dimension by its name, so its column replaces the
            # field's: the dimension would only ever see itself, empty.
            self.problems.append(
                Problem(
                    path,
                    f"The dimension {name!r} reads the field {name!r}, which its "
                    "own value hides from rules and dimensions; rename the "
                    f"dimension (for example {name + 'Name'!r}).",
                )
            )
            return None
        return dimension

    def _segments(self, dimensions: set[str]) -> list[SegmentDefinition]:
        segments = []
        for segment_id, table in self.data.get("segments", {}).items():
            path = f"segments.{segment_id}"
            placeholders = self._placeholders(table["name"], dimensions, f"{path}.name")
            rules = self._rules(table, path)
            if placeholders is None or rules is None:
                continue
            segments.append(
                SegmentDefinition(
                    id=segment_id,
                    template=table["name"],
                    placeholders=placeholders,
                    rules=tuple(rules),
                    min_size=table.get("min_size", self.min_size),
                    enforce_min_size=table.get("enforce_min_size", False),
                    description=table.get("description"),
                )
            )
        return segments

    def _placeholders(
        self, template: str, dimensions: set[str], path: str
    ) -> tuple[str, ...] | None:
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            self.problems.append(
                Problem(path, f"The name template is malformed: {exc}.")
            )
            return None
        names = []
        for _, name, spec, conversion in parsed:
            if name is None:
                continue
            if spec or conversion or name not in dimensions:
                known = ", ".join(sorted(dimensions)) or "none"
                self.problems.append(
                    Problem(
                        path,
                        f"The placeholder {{{name}}} is not a dimension; "
                        f"dimensions: {known}.",
                    )
                )
                return None
            if name not in names:
                names.append(name)
        return tuple(names)

    def _rules(self, table: Mapping[str, Any], path: str) -> list[CompiledRule] | None:
        rules: list[CompiledRule] = []
        ok = True
        if "where" in table:
            rule = self.expression(table["where"], f"{path}.where")
            ok = rule is not None
            if rule is not None:
                rules.append(rule)
        if "rule" in table:
            rule = self._plugin_rule(table["rule"], f"{path}.rule")
            ok = ok and rule is not None
            if rule is not None:
                rules.append(rule)
        return rules if ok else None

    def _plugin_rule(self, table: Mapping[str, Any], path: str) -> CompiledRule | None:
        try:
            rule_type = self.plugins.rule(table["type"])
        except RecipeError as exc:
            self.problems.append(Problem(f"{path}.type", str(exc)))
            return None
        except Exception as exc:
            self.problems.append(Problem(f"{path}.type", str(exc)))
            return None
        args = {key: value for key, value in table.items() if key != "type"}
        faults = validate(args, rule_type.args_schema, path.split("."))
        if faults:
            self.problems.extend(faults)
            return None
        context = _CompileContext(self, path)
        try:
            return rule_type().compile(args, context)
        except RecipeInvalidError as exc:
            self.problems.extend(exc.problems)
        except RecipeError as exc:
            self.problems.append(Problem(path, str(exc)))
        return None


class _CompileContext(RuleContext):
    """The services a rule type gets while compiling one segment's rule."""

    def __init__(self, compiler: SegmentCompiler, path: str) -> None:
        self.compiler = compiler
        self.path = path

    def compile_expression(self, text: str, path: str) -> CompiledRule:
        try:
            return compile_expression(
                text,
                resolve=self.compiler.resolve,
                types=self.compiler._types(),
                now=self.compiler.now,
            )
        except ExpressionError as exc:
            raise RecipeInvalidError(
                "the recipe", [Problem(path, f"{exc.reason} (column {exc.column})")]
            ) from exc

    def reader(self, field: str) -> Callable[[Mapping[str, Any]], Any]:
        return self.compiler.resolve(field)

    def require_trait(self, definition: Mapping[str, Any]) -> str:
        spec = trait_from_definition(_trait_name(definition), definition)
        name = spec.name
        self.compiler.traits.setdefault(name, spec)
        return spec.field


def _trait_name(definition: Mapping[str, Any]) -> str:
    """Name a trait a rule asked for after what it computes.

    For example `api_call count within 7d`, or `... per account` for an account's.

    The name has spaces, which a recipe's own trait names cannot, so the two
    never collide, and `explain` shows what the value is.
    """
    parts = [str(definition.get("event") or "any event"), str(definition["agg"])]
    if definition.get("of"):
        parts.append(f"of {definition['of']}")
    if definition.get("within"):
        parts.append(f"within {definition['within']}")
    if definition.get("per") == "account":
        parts.append("per account")
    return " ".join(parts)
