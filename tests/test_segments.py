"""Dimensions and segments: buckets, cases, name templates, sizes and problems."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from pqlhub import RecipeInvalidError, Record, Source, SourceCapabilities, hookimpl
from pqlhub.engine import Evaluation, compile_recipe, evaluate
from pqlhub.plugins import Plugins
from pqlhub.recipe import Recipe, recipe_from_dict
from pqlhub.segments import bucket_labels

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


class _Memory(Source):
    """Yields the records written in its block; event times as ISO 8601 text."""

    name = "memory"
    capabilities = SourceCapabilities(
        entities=frozenset({"contact", "account", "event"})
    )

    def read(self, cursor: Any = None) -> Iterator[Record]:
        for record in self.config["records"]:
            if "timestamp" in record:
                when = datetime.fromisoformat(record["timestamp"])
                record = {**record, "timestamp": when}
            yield dict(record)


PLUGINS = Plugins.of(SimpleNamespace(pqlhub_source_types=hookimpl(lambda: [_Memory])))


def _recipe(
    contacts: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]] = (),
    settings: Mapping[str, Any] | None = None,
    **sections: Any,
) -> Recipe:
    sources: dict[str, Any] = {
        "users": {
            "plugin": "memory",
            "entity": "contact",
            "key": "id",
            "records": list(contacts),
        }
    }
    if events:
        sources["product"] = {
            "plugin": "memory",
            "entity": "event",
            "records": list(events),
        }
    data = {
        "recipe": {"name": "segments", "min_size": 0, **(settings or {})},
        "sources": sources,
        **sections,
    }
    return recipe_from_dict(data, plugins=PLUGINS, origin="segments.toml")


def _evaluate(contacts: Sequence[Mapping[str, Any]], **sections: Any) -> Evaluation:
    return evaluate(_recipe(contacts, **sections), as_of=AS_OF)


def _members(evaluation: Evaluation) -> dict[str, tuple[str, ...]]:
    return {segment.name: segment.members for segment in evaluation.segments}


def _problems(recipe: Recipe) -> list[str]:
    with pytest.raises(RecipeInvalidError) as caught:
        compile_recipe(recipe)
    return [str(problem) for problem in caught.value.problems]


def _contacts(**values: Any) -> list[dict[str, Any]]:
    """One contact per keyword: `c7=7` makes contact c7 with seats 7."""
    return [
        {"id": key} if value is None else {"id": key, "seats": value}
        for key, value in values.items()
    ]


# ------------------------------------------------------------------------ buckets


@pytest.mark.parametrize(
    ("bounds", "labels"),
    [
        pytest.param([0, 1, 5, 10], ["0", "1-4", "5-9", "10+"], id="seats"),
        pytest.param([0, 10, 100], ["0-9", "10-99", "100+"], id="decades"),
        pytest.param([1, 2, 3], ["1", "2", "3+"], id="single-values"),
        pytest.param([5], ["5+"], id="one-bound"),
        pytest.param([0.5, 1.5, 3], ["0.5-<1.5", "1.5-<3", "3+"], id="fractions"),
    ],
)
def test_bucket_labels_name_each_range(bounds: list[float], labels: list[str]) -> None:
    assert bucket_labels(bounds) == labels


BUCKETED = _contacts(c0=0, c1=1, c4=4, c5=5, c9=9.5, c10=10, c250=250)
BAND = {"field": "seats", "buckets": [0, 1, 5, 10]}


def test_bucket_dimension_sorts_segments_in_bucket_order() -> None:
    contacts = [*BUCKETED, *_contacts(below=-1, text="7", none=None)]

    evaluation = _evaluate(
        contacts,
        dimensions={"band": BAND},
        segments={"by_seats": {"name": "{band} seats"}},
    )

    assert list(_members(evaluation).items()) == [
        ("0 seats", ("c0",)),
        ("1-4 seats", ("c1", "c4")),
        ("5-9 seats", ("c5", "c9")),
        ("10+ seats", ("c10", "c250")),
    ]


def test_bucket_dimension_default_takes_values_outside_every_bucket() -> None:
    contacts = [*BUCKETED, *_contacts(below=-1, text="7", none=None)]
    band = {**BAND, "default": "unknown"}

    evaluation = _evaluate(
        contacts,
        dimensions={"band": band},
        segments={"by_seats": {"name": "{band} seats"}},
    )

    assert _members(evaluation)["unknown seats"] == ("below", "none", "text")


def test_bucket_labels_can_be_overridden_and_keep_bucket_order() -> None:
    band = {**BAND, "labels": ["none", "few", "some", "many"]}

    evaluation = _evaluate(
        BUCKETED,
        dimensions={"band": band},
        segments={"by_seats": {"name": "{band}"}},
    )

    assert list(_members(evaluation).items()) == [
        ("none", ("c0",)),
        ("few", ("c1", "c4")),
        ("some", ("c5", "c9")),
        ("many", ("c10", "c250")),
    ]


@pytest.mark.parametrize(
    ("dimension", "problem"),
    [
        pytest.param(
            {**BAND, "labels": ["small", "large"]},
            "dimensions.band.labels: Expected 4 labels, one per bucket, found 2.",
            id="label-count",
        ),
        pytest.param(
            {"field": "seats", "buckets": [0, 10, 5]},
            "dimensions.band.buckets: Bounds must be ascending.",
            id="descending",
        ),
    ],
)
def test_bucket_dimension_faults_are_reported(
    dimension: dict[str, Any], problem: str
) -> None:
    recipe = _recipe(BUCKETED, dimensions={"band": dimension})

    assert _problems(recipe) == [problem]


# -------------------------------------------------------------------------- cases

SIZE = {
    "cases": [
        {"when": "seats >= 10", "value": "Big"},
        {"when": "seats >= 1", "value": "Small"},
    ],
    "default": "Unknown",
}


def test_case_dimension_first_matching_case_wins_else_default() -> None:
    contacts = _contacts(big=12, edge=10, small=3, zero=0, none=None)

    evaluation = _evaluate(
        contacts,
        dimensions={"size": SIZE},
        segments={"by_size": {"name": "{size} teams"}},
    )

    assert _members(evaluation) == {
        "Big teams": ("big", "edge"),
        "Small teams": ("small",),
        "Unknown teams": ("none", "zero"),
    }


def test_case_dimension_without_default_leaves_contacts_out() -> None:
    size = {"cases": SIZE["cases"]}

    evaluation = _evaluate(
        _contacts(big=12, none=None),
        dimensions={"size": size},
        segments={"by_size": {"name": "{size} teams"}},
    )
    explanation = evaluation.explain("none")

    assert _members(evaluation) == {"Big teams": ("big",)}
    assert explanation is not None
    verdict = explanation.verdicts[0]
    assert (verdict.matched, verdict.name) == (False, None)
    assert verdict.reason == "No value for dimension 'size'."


def test_dimension_reads_an_earlier_dimension() -> None:
    dimensions = {
        "size": SIZE,
        "tier": {
            "cases": [{"when": "size == 'Big'", "value": "Enterprise"}],
            "default": "Self-serve",
        },
    }

    evaluation = _evaluate(
        _contacts(big=12, small=3),
        dimensions=dimensions,
        segments={"by_tier": {"name": "{tier}"}},
    )

    assert _members(evaluation) == {"Enterprise": ("big",), "Self-serve": ("small",)}


# -------------------------------------------------------------------- groupable

FIRST_NAMES = [f"Name{number:02d}" for number in range(60)]


def _people() -> list[dict[str, Any]]:
    return [
        {"id": f"p{number}", "first_name": name, "seats": number % 3}
        for number, name in enumerate(FIRST_NAMES)
    ]


def test_dimension_over_first_names_is_refused_as_not_groupable() -> None:
    recipe = _recipe(_people(), dimensions={"firstName": {"field": "first_name"}})

    with pytest.raises(RecipeInvalidError) as caught:
        evaluate(recipe, as_of=AS_OF)

    assert str(caught.value) == (
        "Recipe segments.toml is invalid (1 problem).\n"
        "  dimensions.firstName: Dimension 'firstName' has 60 distinct values, "
        "more than its limit of 50. Segments need groupable data: group the "
        "values with buckets or cases, or raise max_values if this many segments "
        "is really meant."
    )


def test_dimensions_not_groupable_are_all_reported() -> None:
    recipe = _recipe(
        _people(),
        settings={"max_dimension_values": 2},
        dimensions={
            "firstName": {"field": "first_name"},
            "seatCount": {"field": "seats"},
            "fine": {"field": "seats", "max_values": 3},
        },
    )

    with pytest.raises(RecipeInvalidError) as caught:
        evaluate(recipe, as_of=AS_OF)

    assert [problem.path for problem in caught.value.problems] == [
        "dimensions.firstName",
        "dimensions.seatCount",
    ]
    assert "has 3 distinct values, more than its limit of 2." in str(caught.value)


def test_dimension_max_values_lets_a_wide_dimension_through() -> None:
    evaluation = _evaluate(
        _people(),
        dimensions={"firstName": {"field": "first_name", "max_values": 60}},
        segments={"named": {"name": "{firstName}"}},
    )

    assert len(evaluation.segments) == 60


# ---------------------------------------------------------------- name templates

TEAM = [
    {"id": "a", "role": "Sales", "plan": "trial", "seats": 3},
    {"id": "b", "role": "Sales", "plan": "trial", "seats": 8},
    {"id": "c", "role": "Sales", "plan": "pro", "seats": 4},
    {"id": "d", "role": "Support", "plan": "pro", "seats": 2},
    {"id": "e", "role": "Support", "plan": "trial", "seats": 0},
    {"id": "f", "plan": "pro", "seats": 9},
]
TEAM_DIMENSIONS = {
    "job": {"field": "role"},
    "stage": {
        "cases": [{"when": "plan == 'trial'", "value": "Trial"}],
        "default": "Paid",
    },
}


def test_template_expands_into_one_segment_per_combination_among_members() -> None:
    evaluation = _evaluate(
        TEAM,
        dimensions=TEAM_DIMENSIONS,
        segments={"busy": {"name": "{stage}: {job} busy", "where": "seats >= 3"}},
    )

    assert _members(evaluation) == {
        "Paid: Sales busy": ("c",),
        "Trial: Sales busy": ("a", "b"),
    }
    segment = evaluation.segment("Trial: Sales busy")
    assert segment.id == "busy"
    assert segment.template == "{stage}: {job} busy"
    assert segment.values == {"stage": "Trial", "job": "Sales"}


def test_template_without_placeholders_is_one_segment_even_when_empty() -> None:
    evaluation = _evaluate(
        TEAM, segments={"none": {"name": "Nobody", "where": "seats > 100"}}
    )

    assert _members(evaluation) == {"Nobody": ()}


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        pytest.param(
            "{region}: {job}",
            "segments.busy.name: The placeholder {region} is not a dimension; "
            "dimensions: job, stage.",
            id="unknown-dimension",
        ),
        pytest.param(
            "{job",
            "segments.busy.name: The name template is malformed: "
            "expected '}' before end of string.",
            id="unclosed-brace",
        ),
    ],
)
def test_template_placeholder_faults_name_the_key_path(
    template: str, problem: str
) -> None:
    recipe = _recipe(
        TEAM, dimensions=TEAM_DIMENSIONS, segments={"busy": {"name": template}}
    )

    assert _problems(recipe) == [problem]


@pytest.mark.parametrize(
    "dimension",
    [
        pytest.param({"field": "role"}, id="field"),
        pytest.param({"field": "role", "buckets": [0, 1]}, id="buckets"),
        pytest.param(
            {"cases": [{"when": "role == 'Sales'", "value": "S"}]}, id="cases"
        ),
    ],
)
def test_dimension_reading_a_field_of_its_own_name_is_refused(
    dimension: dict[str, Any],
) -> None:
    recipe = _recipe(TEAM, dimensions={"role": dimension})

    assert _problems(recipe) == [
        "dimensions.role: The dimension 'role' reads the field 'role', which its "
        "own value hides from rules and dimensions; rename the dimension (for "
        "example 'roleName')."
    ]


# -------------------------------------------------------------------- min sizes


@pytest.mark.parametrize(
    ("size_settings", "flags", "reason"),
    [
        pytest.param(
            {"min_size": 3},
            ["below_min_size"],
            "2 members, below the minimum of 3.",
            id="below",
        ),
        pytest.param(
            {"min_size": 3, "enforce_min_size": True},
            ["below_min_size", "held_back"],
            "2 members, below the minimum of 3; held back from syncs.",
            id="below-enforced",
        ),
        pytest.param(
            {"min_size": 2, "enforce_min_size": True}, [], None, id="exactly-minimum"
        ),
        pytest.param(
            {},
            ["below_min_size"],
            "2 members, below the minimum of 5.",
            id="recipe-default",
        ),
    ],
)
def test_segment_below_minimum_size_is_flagged(
    size_settings: dict[str, Any], flags: list[str], reason: str | None
) -> None:
    segments = {"trial": {"name": "Trial", "where": "plan == 'trial' and seats > 0"}}
    segments["trial"].update(size_settings)

    evaluation = evaluate(
        _recipe(TEAM, settings={"min_size": 5}, segments=segments), as_of=AS_OF
    )

    segment = evaluation.segment("Trial")
    assert segment.size == 2
    assert segment.flags == flags
    assert segment.reason == reason
    assert segment.held_back is ("held_back" in flags)
    assert segment.as_dict()["flags"] == flags


# ------------------------------------------------------------------------- rules


def test_segment_with_where_and_rule_requires_both() -> None:
    events = [
        {
            "type": "track",
            "userId": key,
            "event": "login",
            "timestamp": "2026-05-30T12:00:00Z",
        }
        for key in ("a", "c", "f")
    ]
    segment = {
        "name": "Active trials",
        "where": "plan == 'trial'",
        "rule": {"type": "event", "event": "login"},
    }

    evaluation = _evaluate(TEAM, events=events, segments={"active": segment})

    assert evaluation.members("Active trials") == ("a",)


def test_segment_without_rules_holds_everyone() -> None:
    evaluation = _evaluate(TEAM, segments={"all": {"name": "Everyone"}})

    assert evaluation.members("Everyone") == ("a", "b", "c", "d", "e", "f")


# ---------------------------------------------------------------------- problems

BROKEN_CASES = [
    {"when": "seats > 3", "value": "Big"},
    {"when": "seats >", "value": "Small"},
]


@pytest.mark.parametrize(
    ("sections", "problem"),
    [
        pytest.param(
            {"segments": {"x": {"name": "X", "where": "plan = 'pro'"}}},
            "segments.x.where: Assignment is not allowed; use '==' to compare. "
            "(column 6)",
            id="segment-where",
        ),
        pytest.param(
            {"segments": {"x": {"name": "X", "where": "seats > 3 and (plan"}}},
            "segments.x.where: The '(' here is never closed. (column 15)",
            id="unclosed-parenthesis",
        ),
        pytest.param(
            {
                "dimensions": {
                    "size": {
                        "cases": [
                            {"when": "seats > 3", "value": "Big"},
                            {"when": "seats >", "value": "Small"},
                        ]
                    }
                }
            },
            "dimensions.size.cases[1].when: Expected a value after '>', found the "
            "end of the expression. (column 8)",
            id="dimension-case",
        ),
        pytest.param(
            {
                "segments": {
                    "x": {
                        "name": "X",
                        "rule": {"type": "where", "expression": "x.__class__"},
                    }
                }
            },
            "segments.x.rule.expression: Names may not contain '__'. (column 1)",
            id="where-rule",
        ),
    ],
)
def test_expression_fault_names_its_key_path_and_column(
    sections: dict[str, Any], problem: str
) -> None:
    assert _problems(_recipe(TEAM, **sections)) == [problem]


def test_recipe_problems_are_reported_all_together() -> None:
    recipe = _recipe(
        TEAM,
        traits={"seat_total": {"agg": "sum"}},
        dimensions={
            "job": {"field": "role"},
            "size": {"cases": [{"when": "seats >", "value": "Big"}]},
        },
        segments={
            "a": {"name": "A", "where": "plan = 'pro'"},
            "b": {"name": "{region}"},
            "c": {"name": "C", "rule": {"type": "nope"}},
            "d": {"name": "D", "rule": {"type": "event", "event": "x", "per": "team"}},
        },
    )

    problems = _problems(recipe)

    assert [problem.split(":")[0] for problem in problems] == [
        "traits.seat_total.of",
        "dimensions.size.cases[0].when",
        "segments.a.where",
        "segments.b.name",
        "segments.c.rule.type",
        "segments.d.rule.per",
    ]
    assert problems[-1] == (
        "segments.d.rule.per: expected one of 'contact', 'account', found 'team'."
    )
