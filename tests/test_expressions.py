"""Tests for the expression language: values, null rules, errors, explain and SQL."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pqlhub.connectors import CompiledRule, Condition
from pqlhub.errors import ExpressionError
from pqlhub.expressions import Expression, ValueType, compile_expression

NOW = datetime(2026, 12, 1, tzinfo=UTC)
"""The run's as-of time in every test."""

DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)


def clock() -> datetime:
    return NOW


def evaluate(text: str, profile: Mapping[str, Any], **options: Any) -> Any:
    return compile_expression(text, now=clock, **options).evaluate(profile)


# ------------------------------------------------------------------------ evaluation

EVALUATIONS = [
    # Literals.
    pytest.param("1_000 + 0.5", {}, 1000.5, id="literal-number-underscores"),
    pytest.param("1e3", {}, 1000.0, id="literal-exponent"),
    pytest.param(r"'it\'s'", {}, "it's", id="literal-escaped-quote"),
    pytest.param(r'"a\tb\n\\"', {}, "a\tb\n\\", id="literal-escapes"),
    pytest.param("true", {}, True, id="literal-true"),
    pytest.param("False", {}, False, id="literal-python-false"),
    pytest.param("None", {}, None, id="literal-python-none"),
    pytest.param("[1, 'a']", {}, (1, "a"), id="literal-list"),
    pytest.param("(x, 2)", {"x": 1}, (1, 2), id="literal-tuple-of-expressions"),
    pytest.param("(1,)", {}, (1,), id="literal-one-tuple"),
    pytest.param("30d", {}, timedelta(days=30), id="duration-days"),
    pytest.param("12h + 15m + 45s", {}, timedelta(hours=12, seconds=945), id="hms"),
    pytest.param("2w", {}, timedelta(weeks=2), id="duration-weeks"),
    pytest.param("1.5d", {}, timedelta(hours=36), id="duration-fractional"),
    # Arithmetic.
    pytest.param("x + 1", {"x": 2}, 3, id="add"),
    pytest.param("x + 1", {}, None, id="add-missing"),
    pytest.param("x + 1", {"x": "2"}, None, id="add-text-at-runtime"),
    pytest.param("x + 1", {"x": True}, None, id="add-boolean-is-not-a-number"),
    pytest.param("a + b", {"a": "ab", "b": "cd"}, "abcd", id="add-strings"),
    pytest.param("a + b", {"a": [1], "b": (2,)}, (1, 2), id="add-lists"),
    pytest.param("x - 1.5", {"x": 2}, 0.5, id="subtract"),
    pytest.param("x * 3", {"x": 2}, 6, id="multiply"),
    pytest.param("x / 4", {"x": 2}, 0.5, id="divide"),
    pytest.param("x / 0", {"x": 2}, None, id="divide-by-zero"),
    pytest.param("x % 3", {"x": 7}, 1, id="remainder"),
    pytest.param("x % 0", {"x": 7}, None, id="remainder-by-zero"),
    pytest.param("x * 1.5", {"x": 10**400}, None, id="multiply-overflow"),
    pytest.param("-x", {"x": 3}, -3, id="negate"),
    pytest.param("-x", {"x": "a"}, None, id="negate-text-at-runtime"),
    pytest.param("2 + 3 * 4", {}, 14, id="precedence-product-first"),
    pytest.param("(2 + 3) * 4", {}, 20, id="precedence-parentheses"),
    pytest.param("10 - 4 - 3", {}, 3, id="precedence-left-to-right"),
    pytest.param("-2 * -3", {}, 6, id="precedence-unary-minus"),
    # Datetimes and durations.
    pytest.param("now() - 30d", {}, NOW - 30 * DAY, id="now-minus-duration"),
    pytest.param("t - now()", {"t": NOW + DAY}, DAY, id="datetime-minus-datetime"),
    pytest.param(
        "t + 1h",
        {"t": datetime(2026, 1, 1)},
        datetime(2026, 1, 1, 1, tzinfo=UTC),
        id="naive-is-utc",
    ),
    pytest.param("t + 1d", {"t": datetime.max}, None, id="datetime-overflow"),
    pytest.param(
        "d * 2",
        {"d": timedelta(hours=1)},
        timedelta(hours=2),
        id="duration-times-number",
    ),
    pytest.param("d / 1h", {"d": timedelta(hours=3)}, 3.0, id="duration-over-duration"),
    pytest.param("d / 0", {"d": timedelta(hours=3)}, None, id="duration-by-zero"),
    # Comparisons.
    pytest.param("x == 5", {"x": 5}, True, id="equal"),
    pytest.param("x == 5", {"x": 5.0}, True, id="equal-int-float"),
    pytest.param("x == 1", {"x": True}, False, id="equal-boolean-is-not-one"),
    pytest.param("x == 5", {"x": "5"}, False, id="equal-text-is-not-number"),
    pytest.param("x == 5", {}, False, id="equal-missing"),
    pytest.param("x != 5", {"x": 4}, True, id="not-equal"),
    pytest.param("x != 5", {"x": 5}, False, id="not-equal-same"),
    pytest.param("x != 5", {}, False, id="not-equal-missing-is-false"),
    pytest.param("x != 5", {"x": "5"}, True, id="not-equal-other-type"),
    pytest.param("x == true", {"x": True}, True, id="equal-boolean"),
    pytest.param("x == y", {"x": [1, "a"], "y": (1, "a")}, True, id="equal-lists"),
    pytest.param("x == y", {"x": [1], "y": [True]}, False, id="equal-lists-typed"),
    pytest.param(
        "x == y",
        {"x": datetime(2026, 1, 1), "y": date(2026, 1, 1)},
        True,
        id="equal-datetime-date",
    ),
    pytest.param("x < 5", {"x": 4.5}, True, id="less"),
    pytest.param("x <= 5", {"x": 5}, True, id="less-or-equal"),
    pytest.param("x > 5", {"x": 5}, False, id="greater"),
    pytest.param("x >= 5", {"x": 5}, True, id="greater-or-equal"),
    pytest.param("x > 'b'", {"x": "c"}, True, id="greater-text"),
    pytest.param("x > 5", {"x": "6"}, False, id="greater-incomparable"),
    pytest.param("x > 5", {"x": True}, False, id="greater-boolean"),
    pytest.param("5 < x", {"x": 6}, True, id="constant-on-the-left"),
    pytest.param("a < b", {"a": 1, "b": 2.5}, True, id="less-two-names"),
    pytest.param("a < b", {"a": 1, "b": "2"}, False, id="less-two-names-mixed"),
    pytest.param("0 < x <= 5", {"x": 5}, True, id="chain-upper-edge"),
    pytest.param("0 < x <= 5", {"x": 0}, False, id="chain-lower-edge"),
    pytest.param("0 < x <= 5", {}, False, id="chain-missing"),
    pytest.param("plan in ('free', 'trial')", {"plan": "free"}, True, id="in"),
    pytest.param("plan in ('free', 'trial')", {"plan": "pro"}, False, id="in-absent"),
    pytest.param("plan in ('free', 'trial')", {}, False, id="in-missing"),
    pytest.param("plan not in ('free', 'trial')", {"plan": "pro"}, True, id="not-in"),
    pytest.param("plan not in ('free', 'trial')", {}, False, id="not-in-missing"),
    pytest.param("x in (1, 2.5)", {"x": 2.5}, True, id="in-numbers"),
    pytest.param("x in (1, 2)", {"x": True}, False, id="in-numbers-boolean"),
    pytest.param("x in (1, 'a')", {"x": "a"}, True, id="in-mixed-list"),
    pytest.param("'sales' in title", {"title": "VP sales"}, True, id="in-text"),
    pytest.param("'ops' not in title", {"title": "VP sales"}, True, id="not-in-text"),
    pytest.param("x in tags", {"x": "a", "tags": ["a"]}, True, id="in-list-value"),
    pytest.param("x in tags", {"x": "a", "tags": 5}, False, id="in-not-a-list"),
    pytest.param("x is null", {}, True, id="is-null-missing"),
    pytest.param("x is null", {"x": 0}, False, id="is-null-zero"),
    pytest.param("x is not null", {"x": 0}, True, id="is-not-null"),
    # Logic.
    pytest.param("a and b", {"a": True, "b": True}, True, id="and"),
    pytest.param("a and b", {"a": True}, False, id="and-missing"),
    pytest.param("a or b", {"b": 1}, True, id="or-truthy"),
    pytest.param("a and b and c", {"a": 1, "b": 1, "c": 0}, False, id="and-chain"),
    pytest.param("not x", {}, True, id="not-missing"),
    pytest.param("not x", {"x": "a"}, False, id="not-truthy"),
    pytest.param("not (x > 5)", {}, True, id="not-comparison-missing-is-true"),
    pytest.param("not x > 5", {"x": 6}, False, id="precedence-not-below-comparison"),
    pytest.param("a or b and c", {"a": True}, True, id="precedence-and-before-or"),
    pytest.param("not a or b", {"a": True, "b": True}, True, id="precedence-not-first"),
    # Functions.
    pytest.param("now()", {}, NOW, id="now"),
    pytest.param("date('2026-01-02')", {}, datetime(2026, 1, 2, tzinfo=UTC), id="date"),
    pytest.param(
        "date('2026-01-02T03:00:00+02:00')",
        {},
        datetime(2026, 1, 2, 1, tzinfo=UTC),
        id="date-offset",
    ),
    pytest.param("date(s)", {"s": "soon"}, None, id="date-unreadable"),
    pytest.param("date(s)", {"s": 5}, None, id="date-number"),
    pytest.param("days_since(t)", {"t": NOW - 2 * DAY}, 2.0, id="days-since"),
    pytest.param("days_since(t)", {"t": date(2026, 11, 30)}, 1.0, id="days-since-date"),
    pytest.param("days_since(t)", {"t": "2026-11-30"}, None, id="days-since-text"),
    pytest.param("days_since(t)", {}, None, id="days-since-missing"),
    pytest.param(
        "days_until(t)", {"t": NOW + 36 * timedelta(hours=1)}, 1.5, id="days-until"
    ),
    pytest.param("lower(s)", {"s": "ABC"}, "abc", id="lower"),
    pytest.param("lower(s)", {"s": 5}, None, id="lower-number"),
    pytest.param("upper(s)", {"s": "abc"}, "ABC", id="upper"),
    pytest.param("trim(s)", {"s": "  a "}, "a", id="trim"),
    pytest.param("len(s)", {"s": "abc"}, 3, id="len-text"),
    pytest.param("len(s)", {"s": [1, 2]}, 2, id="len-list"),
    pytest.param("len(s)", {"s": 5}, None, id="len-number"),
    pytest.param("contains(s, 'b')", {"s": "abc"}, True, id="contains-text"),
    pytest.param("contains(s, 2)", {"s": [1, 2]}, True, id="contains-list"),
    pytest.param("contains(s, 'a')", {"s": 5}, None, id="contains-number"),
    pytest.param("startswith(s, 'ann')", {"s": "anna"}, True, id="startswith"),
    pytest.param("endswith(s, '.io')", {"s": "x.com"}, False, id="endswith"),
    pytest.param("domain(e)", {"e": "Ann@Example.COM"}, "example.com", id="domain"),
    pytest.param("domain(e)", {"e": "nobody"}, None, id="domain-without-at"),
    pytest.param("coalesce(x, y, 0)", {"y": 2}, 2, id="coalesce"),
    pytest.param("coalesce(x, y)", {}, None, id="coalesce-all-missing"),
    pytest.param("abs(x)", {"x": -1.5}, 1.5, id="abs"),
    pytest.param("abs(x)", {"x": "a"}, None, id="abs-text"),
    pytest.param("min(3, x, 2)", {"x": 1}, 1, id="min"),
    pytest.param(
        "max(a, b)",
        {"a": NOW, "b": datetime(2027, 1, 1)},
        datetime(2027, 1, 1, tzinfo=UTC),
        id="max-datetimes",
    ),
    pytest.param("min(x, y)", {"x": 1, "y": "a"}, None, id="min-mixed"),
    pytest.param("min(x, 1)", {}, None, id="min-missing"),
    pytest.param("round(x, 2)", {"x": 2.567}, 2.57, id="round-digits"),
    pytest.param("round(x)", {"x": 2.7}, 3, id="round"),
    pytest.param("round(x)", {"x": float("inf")}, None, id="round-infinity"),
    pytest.param("round(x, 1)", {"x": "a"}, None, id="round-text"),
    pytest.param("round(x, -100000000000)", {"x": 5}, 0, id="round-huge-digits"),
    # Datetime windows at their edges.
    pytest.param(
        "last_seen >= now() - 30d",
        {"last_seen": NOW - 30 * DAY},
        True,
        id="window-edge",
    ),
    pytest.param(
        "last_seen >= now() - 30d",
        {"last_seen": NOW - 30 * DAY - SECOND},
        False,
        id="window-second-before",
    ),
    pytest.param(
        "last_seen >= now() - 30d",
        {"last_seen": datetime(2026, 11, 1)},
        True,
        id="window-naive",
    ),
    pytest.param(
        "last_seen >= now() - 30d",
        {"last_seen": date(2026, 11, 1)},
        True,
        id="window-date",
    ),
    pytest.param("last_seen >= now() - 30d", {}, False, id="window-missing"),
    pytest.param(
        "last_seen >= now() - 30d", {"last_seen": "2026-11-20"}, False, id="window-text"
    ),
    pytest.param(
        "days_since(t) <= 14", {"t": NOW - 14 * DAY}, True, id="days-window-edge"
    ),
    pytest.param(
        "days_since(t) <= 14",
        {"t": NOW - 14 * DAY - SECOND},
        False,
        id="days-window-after",
    ),
    pytest.param(
        "t < date('2026-12-01')",
        {"t": NOW - timedelta(microseconds=1)},
        True,
        id="before-date",
    ),
    pytest.param("t < date('2026-12-01')", {"t": NOW}, False, id="before-date-edge"),
    pytest.param(
        "t < now()",
        {"t": datetime(2026, 12, 1, 1, tzinfo=timezone(timedelta(hours=2)))},
        True,
        id="offset-datetime",
    ),
]


@pytest.mark.parametrize(("text", "profile", "expected"), EVALUATIONS)
def test_evaluate_gives_the_documented_value(
    text: str, profile: dict[str, Any], expected: Any
) -> None:
    value = evaluate(text, profile)

    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "profile", "expected"),
    [
        pytest.param("x", {"x": True}, True, id="true"),
        pytest.param("x", {"x": "a"}, True, id="truthy-text"),
        pytest.param("x", {"x": 0}, False, id="zero"),
        pytest.param("x", {}, False, id="missing"),
        pytest.param("x + 1", {"x": -1}, False, id="zero-result"),
        pytest.param("x > 5 or y", {"x": 6}, True, id="condition"),
    ],
)
def test_matches_is_true_only_for_true_values(
    text: str, profile: dict[str, Any], expected: bool
) -> None:
    assert compile_expression(text).matches(profile) is expected


def test_expression_is_a_compiled_rule() -> None:
    expression = compile_expression("x > 1")

    assert isinstance(expression, CompiledRule)
    assert expression.text == "x > 1"
    assert repr(expression) == "Expression('x > 1')"


def test_now_follows_the_clock_from_one_run_to_the_next() -> None:
    moment = [NOW]
    expression = compile_expression("t >= now() - 1d", now=lambda: moment[0])
    profile = {"t": NOW}

    assert expression.matches(profile)
    moment[0] = NOW + 2 * DAY
    assert not expression.matches(profile)


def test_naive_clock_is_taken_as_utc() -> None:
    expression = compile_expression("now()", now=lambda: datetime(2026, 1, 1))

    assert expression.evaluate({}) == datetime(2026, 1, 1, tzinfo=UTC)


# -------------------------------------------------------------------------- errors

ERRORS = [
    pytest.param(
        "__import__('os')", 1, "Names may not contain '__'.", id="dunder-import"
    ),
    pytest.param(
        "x.__class__", 1, "Names may not contain '__'.", id="dunder-attribute"
    ),
    pytest.param("a.b__c", 1, "Names may not contain '__'.", id="dunder-inside"),
    pytest.param("'a'.upper()", 4, "Method calls are not allowed", id="method-call"),
    pytest.param(
        "plan.lower() == 'pro'",
        1,
        "Method calls are not allowed; write lower(plan) instead of plan.lower().",
        id="method-call-on-a-field",
    ),
    pytest.param(
        "(x).y", 4, "Attribute access on values is not allowed.", id="attribute"
    ),
    pytest.param("x[0]", 2, "Subscripts like x[0] are not allowed.", id="subscript"),
    pytest.param("lower(x)(1)", 9, "Only functions can be called", id="call-a-value"),
    pytest.param("lambda: 1", 1, "Lambdas are not allowed.", id="lambda"),
    pytest.param(
        "a = 1", 3, "Assignment is not allowed; use '==' to compare.", id="assign"
    ),
    pytest.param("(a := 1)", 4, "Assignment is not allowed", id="walrus"),
    pytest.param("2 ** 3", 3, "The power operator '**' is not allowed.", id="power"),
    pytest.param("a & b", 3, "Bitwise operators are not allowed.", id="bitwise"),
    pytest.param("~a", 1, "Bitwise operators are not allowed.", id="invert"),
    pytest.param(
        "a // 2", 3, "Floor division '//' is not allowed", id="floor-division"
    ),
    pytest.param("a if b else c", 3, "Conditional expressions", id="if-else"),
    pytest.param(
        "[x for x in y]",
        4,
        "Comprehensions and loops are not allowed.",
        id="comprehension",
    ),
    pytest.param("{1: 2}", 1, "Dictionaries and sets are not allowed.", id="dict"),
    pytest.param("import os", 1, "Imports are not allowed.", id="import"),
    pytest.param(
        "x == class", 6, "The reserved word 'class' is not allowed", id="reserved-word"
    ),
    pytest.param(
        "not.x",
        1,
        "A name cannot start with the reserved word 'not'.",
        id="reserved-start",
    ),
    pytest.param("!x", 1, "write 'not' to negate", id="bang"),
    pytest.param(
        "foo(1)",
        1,
        "Unknown function 'foo'; known functions are: abs, coalesce,",
        id="unknown-function",
    ),
    pytest.param("x.y()", 1, "Unknown function 'x.y'", id="dotted-call"),
    pytest.param(
        "lower(a, b)",
        1,
        "Function lower() takes 1 argument, found 2.",
        id="too-many-arguments",
    ),
    pytest.param(
        "now(1)", 1, "Function now() takes no arguments, found 1.", id="now-argument"
    ),
    pytest.param(
        "round()",
        1,
        "Function round() takes 1 to 2 arguments, found 0.",
        id="too-few-arguments",
    ),
    pytest.param(
        "coalesce()",
        1,
        "Function coalesce() takes at least 1 argument, found 0.",
        id="variadic",
    ),
    pytest.param(
        "'a' + 1",
        5,
        "Cannot apply '+' to 'a' (a string) and 1 (a number).",
        id="add-text-number",
    ),
    pytest.param(
        "true * 2", 6, "Cannot apply '*' to true (a boolean)", id="boolean-arithmetic"
    ),
    pytest.param(
        "x + null", 3, "Arithmetic with null always gives null", id="null-arithmetic"
    ),
    pytest.param("-'a'", 1, "Cannot apply unary '-' to a string.", id="negate-text"),
    pytest.param(
        "lower(5)",
        7,
        "Function lower() expects a string as argument 1, found a number.",
        id="function-type",
    ),
    pytest.param(
        "len(1)",
        5,
        "Function len() expects a string or a list as argument 1",
        id="function-types",
    ),
    pytest.param(
        "min(1, 'a')",
        8,
        "Function min() expects arguments of one type, found a number and a string.",
        id="uniform",
    ),
    pytest.param(
        "x in 5",
        3,
        "The right side of 'in' must be a list or a string, found a number.",
        id="in-number",
    ),
    pytest.param(
        "5 in 'abc'",
        3,
        "Only a string can be looked for in a string, found a number.",
        id="in-text",
    ),
    pytest.param(
        "x == null", 3, "Comparisons with null are always false", id="compare-null"
    ),
    pytest.param(
        "now() > 5",
        7,
        "Cannot compare now() (a datetime) with 5 (a number).",
        id="datetime-number",
    ),
    pytest.param(
        "now() > '2026-01-01'",
        7,
        "Write date('2026-01-01') to make a datetime",
        id="datetime-text",
    ),
    pytest.param(
        "true < false", 6, "Cannot order booleans with '<'", id="order-booleans"
    ),
    pytest.param("[1] < [2]", 5, "Cannot order lists", id="order-lists"),
    pytest.param(
        "date('2026-13-01')",
        6,
        "Function date() cannot read '2026-13-01'",
        id="bad-date",
    ),
    pytest.param(
        "x is 5", 6, "Only 'is null' and 'is not null' are allowed", id="is-value"
    ),
    pytest.param(
        "x is null == true",
        11,
        "Other comparisons cannot be chained with 'is null'",
        id="is-null-chain",
    ),
    pytest.param("", 1, "The expression is empty.", id="empty"),
    pytest.param("   ", 1, "The expression is empty.", id="blank"),
    pytest.param(
        "x and",
        6,
        "Expected a value after 'and', found the end of the expression.",
        id="dangling-and",
    ),
    pytest.param(
        "x == == 1", 6, "Expected a value after '==', found '=='.", id="double-operator"
    ),
    pytest.param("$", 1, "Unexpected character '$'.", id="unexpected-character"),
    pytest.param(
        "x == 'abc", 6, "Unterminated string starting here.", id="unterminated-string"
    ),
    pytest.param(
        r"x == 'a\q'", 8, "Unknown escape '\\q' in a string", id="unknown-escape"
    ),
    pytest.param(
        "a b",
        3,
        "Expected an operator or the end of the expression, found 'b'.",
        id="two-values",
    ),
    pytest.param("a 'b'", 3, "found the string 'b'.", id="two-values-string"),
    pytest.param("(a", 1, "The '(' here is never closed.", id="unclosed"),
    pytest.param("a)", 2, "Unmatched ')'.", id="unmatched"),
    pytest.param("f(a b)", 5, "Expected ',' or ')', found 'b'.", id="missing-comma"),
    pytest.param(
        "30days", 1, "Cannot read '30days' as a number or a duration", id="bad-duration"
    ),
    pytest.param("1__0", 1, "Cannot read '1__0' as a number.", id="bad-number"),
    pytest.param("1" * 5000, 1, "as a number.", id="huge-number"),
    pytest.param("1e999d", 1, "The duration '1e999d' is too long.", id="huge-duration"),
    pytest.param(
        "(" * 40 + "x" + ")" * 40, 33, "nests more than 32 levels deep", id="nesting"
    ),
    pytest.param(
        "not " * 40 + "x", 129, "nests more than 32 levels deep", id="nesting-not"
    ),
    pytest.param(
        " + ".join(["x"] * 100), 255, "more than 64 operations deep", id="depth"
    ),
]


@pytest.mark.parametrize(("text", "column", "message"), ERRORS)
def test_compile_rejects_with_column_and_reason(
    text: str, column: int, message: str
) -> None:
    with pytest.raises(ExpressionError, match=re.escape(message)) as caught:
        compile_expression(text)

    assert caught.value.column == column
    assert caught.value.expression == text
    assert caught.value.reason[0].isupper()
    assert caught.value.reason.endswith(".")


@pytest.mark.parametrize(
    ("text", "types", "column", "message"),
    [
        pytest.param(
            "plan > 5",
            {"plan": "string"},
            6,
            "Cannot compare plan (a string) with 5 (a number).",
            id="compare",
        ),
        pytest.param(
            "plan in (1, 2)",
            {"plan": "string"},
            6,
            "Cannot look for a string in a list of numbers.",
            id="in-list",
        ),
        pytest.param(
            "seen > signed",
            {"seen": "datetime", "signed": "string"},
            6,
            "with date(...)",
            id="datetime-text",
        ),
        pytest.param(
            "lower(n)",
            {"n": "number"},
            7,
            "Function lower() expects a string",
            id="function",
        ),
        pytest.param(
            "n + s",
            {"n": "number", "s": "string"},
            3,
            "Cannot apply '+' to n (a number)",
            id="arithmetic",
        ),
        pytest.param(
            "b == 1",
            {"b": "boolean"},
            3,
            "Cannot compare b (a boolean) with 1",
            id="boolean",
        ),
        pytest.param(
            "days_since(t)",
            {"t": "string"},
            12,
            "Function days_since() expects a datetime",
            id="days-since-text",
        ),
    ],
)
def test_compile_checks_declared_types(
    text: str, types: dict[str, ValueType], column: int, message: str
) -> None:
    with pytest.raises(ExpressionError, match=re.escape(message)) as caught:
        compile_expression(text, types=types)

    assert caught.value.column == column


def test_compile_rejects_an_unknown_declared_type() -> None:
    with pytest.raises(ValueError, match="'money' given for 'x' is not one of"):
        compile_expression("x > 1", types={"x": "money"})  # type: ignore[dict-item]


# ------------------------------------------------------------------ fields, explain


def test_fields_are_exactly_the_names_read() -> None:
    expression = compile_expression(
        "account.api_calls >= 500 and lower(plan) in ('free', 'trial') "
        "or days_since(signed_up_at) < 14 or plan is null"
    )

    assert expression.fields == {"account.api_calls", "plan", "signed_up_at"}


def test_fields_are_empty_without_names() -> None:
    assert compile_expression("now() > date('2026-01-01')").fields == frozenset()


def test_explain_lists_each_leaf_with_its_values_and_result() -> None:
    expression = compile_expression(
        "account.api_calls >= 500 and (plan in ('free', 'trial') or not seats > 3)"
        " and not lower(job_role) == 'sales'"
    )
    profile = {"account.api_calls": 650, "plan": "pro", "job_role": "Sales"}

    assert expression.explain(profile) == [
        Condition("account.api_calls >= 500", {"account.api_calls": 650}, True),
        Condition("plan in ('free', 'trial')", {"plan": "pro"}, False),
        Condition("not seats > 3", {"seats": None}, True),
        Condition("not lower(job_role) == 'sales'", {"job_role": "Sales"}, False),
    ]
    assert not expression.matches(profile)


def test_explain_opens_a_negated_group() -> None:
    expression = compile_expression("not (a > 1 or (b))")

    assert expression.explain({"a": 2, "b": 0}) == [
        Condition("a > 1", {"a": 2}, True),
        Condition("b", {"b": 0}, False),
    ]


def test_explain_keeps_parentheses_around_a_leaf_under_not() -> None:
    expression = compile_expression("x and not (y == 2)")

    assert [c.text for c in expression.explain({})] == ["x", "not (y == 2)"]


# ------------------------------------------------------------ resolver and functions


def test_resolve_turns_each_name_into_a_getter_once() -> None:
    asked: list[str] = []

    def resolve(name: str) -> Callable[[Mapping[str, Any]], Any]:
        asked.append(name)
        entity, _, key = name.partition(".")
        return lambda profile: profile.get(entity, {}).get(key)

    expression = compile_expression(
        "account.api_calls >= 500 and account.api_calls < 1000", resolve=resolve
    )

    assert asked == ["account.api_calls"]
    assert expression.matches({"account": {"api_calls": 700}})
    assert expression.explain({"account": {"api_calls": 700}})[0].values == {
        "account.api_calls": 700
    }


def test_functions_extend_the_language() -> None:
    calls: list[tuple[Any, ...]] = []

    def score(calls_made: int, seats: int = 1) -> int:
        calls.append((calls_made, seats))
        return calls_made * seats

    expression = compile_expression("score(x, 2) > 10", functions={"score": score})

    assert expression.matches({"x": 6})
    assert not expression.matches({})
    assert calls == [(6, 2)]


def test_functions_arity_comes_from_the_signature() -> None:
    with pytest.raises(ExpressionError, match=re.escape("takes 1 to 2 arguments")):
        compile_expression("score(1, 2, 3)", functions={"score": lambda a, b=1: a})


def test_functions_may_replace_a_built_in() -> None:
    expression = compile_expression("lower(x)", functions={"lower": str.upper})

    assert expression.evaluate({"x": "a"}) == "A"


# ----------------------------------------------------------------------------- SQL


@pytest.mark.parametrize(
    ("text", "sql"),
    [
        pytest.param(
            "account.api_calls >= 500 and plan in ('free', 'trial')",
            """(COALESCE(("account.api_calls" >= 500), FALSE)"""
            """ AND COALESCE(("plan" IN ('free', 'trial')), FALSE))""",
            id="and-in",
        ),
        pytest.param(
            r"not (x != 'it\'s') or y is null",
            """((NOT COALESCE(("x" <> 'it''s'), FALSE)) OR ("y" IS NULL))""",
            id="not-or-null",
        ),
        pytest.param(
            "last_seen >= now() - 30d",
            """COALESCE(("last_seen" >= (TIMESTAMP WITH TIME ZONE """
            """'2026-12-01T00:00:00+00:00' - INTERVAL '2592000.0 seconds')), FALSE)""",
            id="window",
        ),
        pytest.param(
            "lower(role) == 'sales' and x / y > 1",
            """(COALESCE((LOWER("role") = 'sales'), FALSE)"""
            """ AND COALESCE((("x" / NULLIF("y", 0)) > 1), FALSE))""",
            id="function-division",
        ),
        pytest.param("domain(email) == 'a.io'", None, id="no-sql-function"),
        pytest.param("x", None, id="untyped-name"),
    ],
)
def test_to_sql_writes_the_same_condition(text: str, sql: str | None) -> None:
    assert compile_expression(text, now=clock).to_sql() == sql


def test_to_sql_escapes_like_patterns() -> None:
    expression = compile_expression(
        "startswith(email, 'a_b%')", types={"email": "string"}
    )

    assert expression.to_sql() == (
        """COALESCE(("email" LIKE 'a\\_b\\%%' ESCAPE '\\'), FALSE)"""
    )


# ------------------------------------------------------------------------ properties

NAMES = ["a", "b", "c", "x.y"]
TOKENS = [
    *NAMES,
    *["0", "1", "2.5", "1e3", "-", "30d", "1h", "'a'", "''", '"b"', "'2026-01-01'"],
    *["true", "false", "null", "None", "and", "or", "not", "in", "is"],
    *["==", "!=", "<", "<=", ">", ">=", "+", "*", "/", "%", "(", ")", "[", "]", ","],
    *["now", "date", "days_since", "lower", "len", "contains", "coalesce", "min"],
    *["round", "domain", ".", "__x", "lambda", "=", "x[0]", "'", "\\"],
]
ATOMS = [
    *NAMES,
    *["0", "-1", "2.5", "1e3", "'a'", "''", "'a@b.io'", "'2026-01-01'", "30d", "1h"],
    *["true", "false", "null", "now()", "date('2026-06-01')", "(1, 'a')", "[]"],
]
BINARY = ["and", "or", "==", "!=", "<", "<=", ">", ">=", "in", "not in"]
BINARY += ["+", "-", "*", "/", "%"]
UNARY_FUNCTIONS = ["lower", "upper", "trim", "len", "domain", "abs", "date"]
UNARY_FUNCTIONS += ["days_since", "days_until", "round", "min", "coalesce"]
BINARY_FUNCTIONS = ["contains", "startswith", "endswith", "coalesce", "max", "round"]
VALUE_TYPES: list[ValueType] = [
    "number",
    "string",
    "boolean",
    "datetime",
    "duration",
    "list",
]

offsets = st.timedeltas(min_value=-timedelta(hours=23), max_value=timedelta(hours=23))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=5),
    st.datetimes(timezones=st.none() | st.just(UTC) | st.builds(timezone, offsets)),
    st.dates(),
    st.timedeltas(),
)
profiles = st.dictionaries(
    st.sampled_from(NAMES), scalars | st.lists(scalars, max_size=3), max_size=4
)


def combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(children, st.sampled_from(BINARY), children)
    unary = st.tuples(st.sampled_from(UNARY_FUNCTIONS), children)
    pairs = st.tuples(st.sampled_from(BINARY_FUNCTIONS), children, children)
    return st.one_of(
        binary.map(lambda parts: f"({parts[0]} {parts[1]} {parts[2]})"),
        unary.map(lambda parts: f"{parts[0]}({parts[1]})"),
        pairs.map(lambda parts: f"{parts[0]}({parts[1]}, {parts[2]})"),
        children.map(lambda child: f"(not {child})"),
        children.map(lambda child: f"-({child})"),
        children.map(lambda child: f"({child} is not null)"),
        st.lists(children, max_size=3).map(lambda items: f"[{', '.join(items)}]"),
    )


expressions = st.recursive(st.sampled_from(ATOMS), combine, max_leaves=12)
token_soups = st.lists(st.sampled_from(TOKENS), max_size=25).flatmap(
    lambda tokens: st.sampled_from([" ".join(tokens), "".join(tokens)])
)
declared_types = st.dictionaries(st.sampled_from(NAMES), st.sampled_from(VALUE_TYPES))


def compiled(text: str, types: Mapping[str, Any]) -> Expression | ExpressionError:
    """Compile, returning the error instead of raising it."""
    try:
        return compile_expression(text, types=types, now=clock)
    except ExpressionError as error:
        return error


def exercise(text: str, profile: Mapping[str, Any], types: Mapping[str, Any]) -> None:
    """Compile, and when that works, run every entry point; none may raise."""
    expression = compiled(text, types)
    if isinstance(expression, ExpressionError):
        assert 1 <= expression.column <= len(text) + 1
        return
    expression.evaluate(profile)
    assert isinstance(expression.matches(profile), bool)
    assert all(isinstance(c.result, bool) for c in expression.explain(profile))
    expression.to_sql()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_compile_random_text_raises_only_expression_errors(text: str) -> None:
    exercise(text, {}, {})


@settings(max_examples=300, deadline=None)
@given(token_soups, profiles)
def test_compile_random_tokens_raises_only_expression_errors(
    text: str, profile: dict[str, Any]
) -> None:
    exercise(text, profile, {})


@settings(max_examples=500, deadline=None)
@given(expressions, profiles, declared_types)
def test_compiled_expressions_never_raise_on_random_profiles(
    text: str, profile: dict[str, Any], types: dict[str, ValueType]
) -> None:
    exercise(text, profile, types)
