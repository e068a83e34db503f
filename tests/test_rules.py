"""Segment-rule types: the built-in `event` and `score` rules, and a plugin's own."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from pqlhub import (
    CompiledRule,
    Condition,
    RecipeError,
    RecipeInvalidError,
    Record,
    RuleContext,
    RuleType,
    Source,
    SourceCapabilities,
    hookimpl,
)
from pqlhub.engine import Evaluation, compile_recipe, evaluate
from pqlhub.plugins import Plugins
from pqlhub.recipe import Recipe, recipe_from_dict

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


class _Memory(Source):
    """Yields the records written in its block."""

    name = "memory"
    capabilities = SourceCapabilities(entities=frozenset({"contact", "event"}))

    def read(self, cursor: Any = None) -> Iterator[Record]:
        for record in self.config["records"]:
            yield dict(record)


def _memory_plugin() -> object:
    return SimpleNamespace(pqlhub_source_types=hookimpl(lambda: [_Memory]))


def _login(user: str, days_ago: float) -> dict[str, Any]:
    when = AS_OF - timedelta(days=days_ago)
    return {"type": "track", "userId": user, "event": "login", "timestamp": when}


# a and b work at acme.com, c at solo.io; d never logs in.
CONTACTS = [
    {"id": "a", "email": "a@acme.com", "seats": 2, "invited": True},
    {"id": "b", "email": "b@acme.com", "seats": 4},
    {"id": "c", "email": "c@solo.io", "seats": 1.5, "invited": True},
    {"id": "d", "email": "d@solo.io", "seats": "4", "invited": True},
    {"id": "e", "email": "e@home.net", "seats": 2, "invited": False},
]
LOGINS = [
    _login("a", 1),
    _login("a", 3),
    _login("a", 20),
    _login("b", 2),
    _login("c", 10),
    _login("c", 7),
]


def _recipe(
    rule: Mapping[str, Any],
    plugins: Sequence[object] = (),
    where: str | None = None,
) -> Recipe:
    segment: dict[str, Any] = {"name": "Matched", "rule": dict(rule)}
    if where is not None:
        segment["where"] = where
    data = {
        "recipe": {"name": "rules", "min_size": 0},
        "sources": {
            "users": {
                "plugin": "memory",
                "entity": "contact",
                "key": "id",
                "records": CONTACTS,
            },
            "product": {"plugin": "memory", "entity": "event", "records": LOGINS},
        },
        "segments": {"matched": segment},
    }
    manager = Plugins.of(_memory_plugin(), *plugins)
    return recipe_from_dict(data, plugins=manager, origin="rules.toml")


def _members(rule: Mapping[str, Any], plugins: Sequence[object] = ()) -> list[str]:
    evaluation = evaluate(_recipe(rule, plugins), as_of=AS_OF)
    return list(evaluation.members("Matched"))


def _conditions(evaluation: Evaluation, key: str) -> list[Condition]:
    explanation = evaluation.explain(key)
    assert explanation is not None
    return list(explanation.verdicts[0].conditions)


def _problems(rule: Mapping[str, Any], plugins: Sequence[object] = ()) -> list[str]:
    with pytest.raises(RecipeInvalidError) as caught:
        compile_recipe(_recipe(rule, plugins))
    return [str(problem) for problem in caught.value.problems]


# -------------------------------------------------------------------------- event


@pytest.mark.parametrize(
    ("args", "members"),
    [
        pytest.param({}, ["a", "b", "c"], id="at-least-once-by-default"),
        pytest.param({"min_count": 2}, ["a", "c"], id="min-count"),
        pytest.param({"min_count": 3}, ["a"], id="min-count-edge"),
        pytest.param({"max_count": 1, "min_count": 0}, ["b", "d", "e"], id="max-count"),
        pytest.param({"min_count": 0, "max_count": 0}, ["d", "e"], id="never"),
        pytest.param({"min_count": 2, "within": "10d"}, ["a", "c"], id="within-edge"),
        pytest.param({"min_count": 2, "within": "9d"}, ["a"], id="within"),
        pytest.param({"min_count": 4, "per": "account"}, ["a", "b"], id="per-account"),
        pytest.param(
            {"min_count": 2, "within": "5d", "per": "account"},
            ["a", "b"],
            id="per-account-within",
        ),
    ],
)
def test_event_rule_counts_the_event(args: dict[str, Any], members: list[str]) -> None:
    assert _members({"type": "event", "event": "login", **args}) == members


def test_event_rule_of_an_event_nobody_did_matches_nobody() -> None:
    assert _members({"type": "event", "event": "purchase"}) == []


@pytest.mark.parametrize(
    ("args", "text", "count"),
    [
        pytest.param(
            {"min_count": 2, "within": "7d"},
            "the contact did 'login' at least 2 times within 7d",
            2,
            id="within",
        ),
        pytest.param(
            {"max_count": 5, "per": "account"},
            "the account did 'login' at least 1 times and at most 5 times",
            4,
            id="per-account",
        ),
    ],
)
def test_event_rule_explains_the_count_it_saw(
    args: dict[str, Any], text: str, count: int
) -> None:
    evaluation = evaluate(
        _recipe({"type": "event", "event": "login", **args}), as_of=AS_OF
    )

    assert _conditions(evaluation, "a") == [Condition(text, {"count": count}, True)]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        pytest.param(
            {"min_count": -1},
            "segments.matched.rule.min_count: -1 is less than the minimum of 0.",
            id="negative-count",
        ),
        pytest.param(
            {"within": "a week"},
            "segments.matched.rule.within: 'a week' is not valid: a length of time: "
            'a whole number and a unit, s, m, h, d or w ("30d").',
            id="bad-duration",
        ),
        pytest.param(
            {"times": 3},
            "segments.matched.rule.times: unknown key. Allowed keys: event, "
            "max_count, min_count, per, within.",
            id="unknown-key",
        ),
    ],
)
def test_event_rule_bad_args_are_reported_with_key_path(
    args: dict[str, Any], problem: str
) -> None:
    assert _problems({"type": "event", "event": "login", **args}) == [problem]


# -------------------------------------------------------------------------- score


def test_score_rule_linear_counts_missing_and_text_as_zero_booleans_as_one() -> None:
    # score = 1 + seats + 2 * invited, at least 5:
    # a 1+2+2 = 5 (the edge), b 1+4+0 = 5 (invited missing), c 1+1.5+2 = 4.5,
    # d 1+0+2 = 3 (seats is text), e 1+2+0 = 3 (invited false).
    rule = {"type": "score", "weights": {"seats": 1, "invited": 2}, "bias": 1}

    assert _members({**rule, "threshold": 5}) == ["a", "b"]
    assert _members({**rule, "threshold": 4.5}) == ["a", "b", "c"]
    assert _members({**rule, "threshold": 5.0001}) == []


def test_score_rule_bias_defaults_to_zero() -> None:
    rule = {"type": "score", "weights": {"seats": 1}, "threshold": 2}

    assert _members(rule) == ["a", "b", "e"]


@pytest.mark.parametrize(
    ("threshold", "members"),
    [
        # sigmoid(seats - 2): a and e 0.5, b 0.881, c 0.378, d (text) 0.119
        pytest.param(0.5, ["a", "b", "e"], id="edge-one-half"),
        pytest.param(0.51, ["b"], id="above-one-half"),
        pytest.param(0.11, ["a", "b", "c", "d", "e"], id="low"),
        pytest.param(0.9, [], id="high"),
    ],
)
def test_score_rule_logistic_passes_the_sum_through_the_sigmoid(
    threshold: float, members: list[str]
) -> None:
    rule = {
        "type": "score",
        "link": "logistic",
        "bias": -2,
        "weights": {"seats": 1},
        "threshold": threshold,
    }

    assert _members(rule) == members


def test_score_rule_logistic_survives_huge_scores() -> None:
    rule = {"type": "score", "link": "logistic", "weights": {"seats": -1e6}}

    assert _members({**rule, "threshold": 0.5}) == ["d"]


@pytest.mark.parametrize(
    ("link", "text", "result"),
    [
        pytest.param("linear", "score 5.000 >= 5.0", True, id="linear"),
        pytest.param("logistic", "logistic score 0.993 >= 5.0", False, id="logistic"),
    ],
)
def test_score_rule_explains_its_score_and_terms(
    link: str, text: str, result: bool
) -> None:
    rule = {
        "type": "score",
        "link": link,
        "bias": 1,
        "weights": {"seats": 1, "invited": 2},
        "threshold": 5,
    }
    evaluation = evaluate(_recipe(rule), as_of=AS_OF)

    assert _conditions(evaluation, "a") == [
        Condition(text, {"invited": 1.0, "seats": 2.0}, result)
    ]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        pytest.param(
            {"weights": {"seats": 1}},
            "segments.matched.rule.threshold: is required but missing.",
            id="no-threshold",
        ),
        pytest.param(
            {"weights": {"seats": "high"}, "threshold": 1},
            "segments.matched.rule.weights.seats: expected a number, found a "
            "string 'high'.",
            id="weight-not-a-number",
        ),
        pytest.param(
            {"weights": {"seats": 1}, "threshold": 1, "link": "probit"},
            "segments.matched.rule.link: expected one of 'linear', 'logistic', "
            "found 'probit'.",
            id="unknown-link",
        ),
    ],
)
def test_score_rule_bad_args_are_reported_with_key_path(
    args: dict[str, Any], problem: str
) -> None:
    assert _problems({"type": "score", **args}) == [problem]


# ------------------------------------------------------------ a plugin's rule type


class _DomainRule(CompiledRule):
    def __init__(
        self,
        domains: frozenset[str],
        minimum: int,
        email: Callable[[Any], Any],
        logins: Callable[[Any], Any],
    ) -> None:
        self.fields = frozenset({"email"})
        self.domains = domains
        self.minimum = minimum
        self.email = email
        self.logins = logins

    def matches(self, profile: Mapping[str, Any]) -> bool:
        domain = str(self.email(profile)).rpartition("@")[2]
        return domain in self.domains and (self.logins(profile) or 0) >= self.minimum

    def explain(self, profile: Mapping[str, Any]) -> list[Condition]:
        seen = {"email": self.email(profile), "logins": self.logins(profile)}
        text = f"works at one of {sorted(self.domains)}, {self.minimum}+ logins in 10d"
        return [Condition(text, seen, self.matches(profile))]


class Mine(RuleType):
    """Contacts at given email domains who logged in often enough lately."""

    name = "mine"
    args_schema: ClassVar[Mapping[str, Any]] = {
        "type": "object",
        "properties": {
            "domains": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "min_logins": {"type": "integer", "minimum": 0},
        },
        "required": ["domains"],
        "additionalProperties": False,
    }

    def compile(self, args: Mapping[str, Any], context: RuleContext) -> CompiledRule:
        """Check the domains, and ask for a recent login count as a trait."""
        for domain in args["domains"]:
            if "." not in domain:
                raise RecipeError(f"The domain {domain!r} has no dot; write it whole.")
        field = context.require_trait(
            {"event": "login", "agg": "count", "within": "10d"}
        )
        return _DomainRule(
            frozenset(args["domains"]),
            args.get("min_logins", 0),
            context.reader("email"),
            context.reader(field),
        )


class MinePlugin:
    @hookimpl
    def pqlhub_rule_types(self) -> Sequence[type[RuleType]]:
        return [Mine]


def test_plugin_rule_type_is_used_by_a_recipe() -> None:
    rule = {"type": "mine", "domains": ["acme.com", "solo.io"], "min_logins": 2}

    assert _members(rule, [MinePlugin()]) == ["a", "c"]


def test_plugin_rule_type_combines_with_where() -> None:
    recipe = _recipe(
        {"type": "mine", "domains": ["acme.com"]}, [MinePlugin()], "seats > 3"
    )

    assert evaluate(recipe, as_of=AS_OF).members("Matched") == ("b",)


def test_plugin_rule_type_explains_through_the_engine() -> None:
    rule = {"type": "mine", "domains": ["solo.io"], "min_logins": 2}
    evaluation = evaluate(_recipe(rule, [MinePlugin()]), as_of=AS_OF)

    assert _conditions(evaluation, "c") == [
        Condition(
            "works at one of ['solo.io'], 2+ logins in 10d",
            {"email": "c@solo.io", "logins": 2},
            True,
        )
    ]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        pytest.param(
            {},
            "segments.matched.rule.domains: is required but missing.",
            id="missing",
        ),
        pytest.param(
            {"domains": "acme.com"},
            "segments.matched.rule.domains: expected an array, found a string "
            "'acme.com'.",
            id="wrong-type",
        ),
        pytest.param(
            {"domains": ["acme.com"], "min_logins": "2"},
            "segments.matched.rule.min_logins: expected an integer, found a "
            "string '2'.",
            id="wrong-type-nested",
        ),
        pytest.param(
            {"domains": ["localhost"]},
            "segments.matched.rule: The domain 'localhost' has no dot; write it whole.",
            id="refused-by-compile",
        ),
    ],
)
def test_plugin_rule_type_bad_args_are_reported_with_key_path(
    args: dict[str, Any], problem: str
) -> None:
    assert _problems({"type": "mine", **args}, [MinePlugin()]) == [problem]


def test_rule_type_no_plugin_provides_is_reported_with_key_path() -> None:
    assert _problems({"type": "mine", "domains": ["acme.com"]}) == [
        "segments.matched.rule.type: No installed plugin provides the rule type "
        "'mine'; installed rule types: 'event', 'score', 'where'. Run 'pqlhub "
        "plugins' to see load errors."
    ]
