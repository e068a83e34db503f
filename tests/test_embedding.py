"""Embedding pqlhub in Python: recipes, evaluation, segments and explanations.

The plugins and the clock are injected: a source defined here yields records
from memory, so no file is read unless a test writes one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import pqlhub_csv
from pqlhub import Record, Source, SourceCapabilities, hookimpl
from pqlhub.engine import Evaluation, evaluate
from pqlhub.plugins import Plugins
from pqlhub.recipe import Recipe, load_recipe, recipe_from_dict

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)

PEOPLE: dict[str, list[Record]] = {
    "contact": [
        {"id": "ann", "plan": "trial", "role": "Engineering"},
        {"id": "bob", "plan": "trial", "role": "Sales"},
        {"id": "cyd", "plan": "pro", "role": "Engineering"},
    ],
    "event": [
        {"type": "track", "userId": "ann", "event": "login", "timestamp": NOW},
        {
            "type": "track",
            "userId": "bob",
            "event": "login",
            "timestamp": NOW - timedelta(days=20),
        },
    ],
}


class People(Source):
    """Yields fixed records from memory, by entity."""

    name = "people"
    capabilities = SourceCapabilities(entities=frozenset({"contact", "event"}))

    def read(self, cursor: Any = None) -> Iterator[Record]:
        for record in PEOPLE[self.context.entity]:
            yield dict(record)


class PeoplePlugin:
    @hookimpl
    def pqlhub_source_types(self) -> Sequence[type[Source]]:
        return [People]


RECIPE: dict[str, Any] = {
    "recipe": {"name": "embedded", "min_size": 2},
    "sources": {
        "users": {"plugin": "people", "entity": "contact", "key": "id"},
        "product": {"plugin": "people", "entity": "event"},
    },
    "traits": {"logins": {"event": "login", "agg": "count", "within": "14d"}},
    "dimensions": {"job": {"field": "role"}},
    "segments": {
        "active_trials": {
            "name": "{job} active trials",
            "where": "plan == 'trial' and logins >= 1",
        },
        "trials": {"name": "Trials", "where": "plan == 'trial'"},
    },
}


def _recipe(**settings: Any) -> Recipe:
    data = {**RECIPE, "recipe": {**RECIPE["recipe"], **settings}}
    return recipe_from_dict(data, plugins=Plugins.of(PeoplePlugin()))


@pytest.fixture
def evaluation() -> Evaluation:
    return evaluate(_recipe(), as_of=NOW)


def test_evaluate_lists_segments_in_recipe_order(evaluation: Evaluation) -> None:
    assert [(s.id, s.name, s.size) for s in evaluation.segments] == [
        ("active_trials", "Engineering active trials", 1),
        ("trials", "Trials", 2),
    ]
    assert evaluation.as_of == NOW
    assert len(evaluation.table) == 3


def test_evaluation_members_and_segment_by_expanded_name(
    evaluation: Evaluation,
) -> None:
    segment = evaluation.segment("Engineering active trials")

    assert evaluation.members("Trials") == ("ann", "bob")
    assert segment.members == ("ann",)
    assert segment.values == {"job": "Engineering"}
    assert segment.flags == ["below_min_size"]


def test_evaluation_segment_of_unknown_name_raises_key_error(
    evaluation: Evaluation,
) -> None:
    with pytest.raises(KeyError, match="Sales active trials"):
        evaluation.segment("Sales active trials")


def test_evaluation_explain_gives_each_verdict_and_its_values(
    evaluation: Evaluation,
) -> None:
    explanation = evaluation.explain("bob")

    assert explanation is not None
    assert explanation.values == {
        "logins": 0,
        "plan": "trial",
        "role": "Sales",
    }
    assert explanation.dimensions == {"job": "Sales"}
    verdicts = {verdict.id: verdict for verdict in explanation.verdicts}
    assert verdicts["active_trials"].matched is False
    assert verdicts["active_trials"].name == "Sales active trials"
    assert [c.result for c in verdicts["active_trials"].conditions] == [True, False]
    assert verdicts["trials"].matched is True


def test_evaluation_explain_is_json_ready(evaluation: Evaluation) -> None:
    explanation = evaluation.explain("ann")

    assert explanation is not None
    plain = json.loads(json.dumps(explanation.as_dict()))
    assert plain["key"] == "ann"
    assert [s["matched"] for s in plain["segments"]] == [True, True]
    assert plain["segments"][0]["conditions"][1] == {
        "text": "logins >= 1",
        "values": {"logins": 1},
        "result": True,
    }


def test_evaluation_explain_of_unknown_contact_is_none(evaluation: Evaluation) -> None:
    assert evaluation.explain("zed") is None


# ------------------------------------------------------------------------ clocks


def test_evaluate_takes_the_time_from_the_injected_clock() -> None:
    evaluation = evaluate(_recipe(), clock=lambda: NOW + timedelta(days=10))

    assert evaluation.as_of == NOW + timedelta(days=10)
    assert evaluation.members("Trials") == ("ann", "bob")
    assert evaluation.segments[0].name == "Engineering active trials"


def test_evaluate_window_follows_the_clock() -> None:
    later = evaluate(_recipe(), clock=lambda: NOW + timedelta(days=15))

    assert [s.name for s in later.segments] == ["Trials"]


def _no_clock() -> datetime:
    raise AssertionError("the clock is not read when the time is given")


def test_evaluate_as_of_wins_over_the_recipe_and_the_clock() -> None:
    recipe = _recipe(as_of="2026-01-01T00:00:00Z")

    assert evaluate(recipe, as_of=NOW, clock=_no_clock).as_of == NOW


def test_evaluate_recipe_as_of_wins_over_the_clock() -> None:
    recipe = _recipe(as_of="2026-03-15T12:00:00+00:00")

    assert evaluate(recipe, clock=_no_clock).as_of == NOW


def test_evaluate_takes_a_naive_as_of_as_utc() -> None:
    evaluation = evaluate(_recipe(), as_of=NOW.replace(tzinfo=None))

    assert evaluation.as_of == NOW
    assert evaluation.members("Engineering active trials") == ("ann",)


def test_now_in_expressions_is_the_evaluation_time() -> None:
    data = {
        **RECIPE,
        "segments": {"soon": {"name": "Soon", "where": "now() >= date('2026-03-10')"}},
    }
    recipe = recipe_from_dict(data, plugins=Plugins.of(PeoplePlugin()))

    assert evaluate(recipe, clock=lambda: NOW).members("Soon") == ("ann", "bob", "cyd")
    assert evaluate(recipe, as_of=NOW - timedelta(days=10)).members("Soon") == ()


# ----------------------------------------------------------------- loading files

TOML = """
[recipe]
name = "from-file"
as_of = "2026-03-15T12:00:00Z"
min_size = 0

[sources.users]
plugin = "csv"
entity = "contact"
key = "id"
path = "people.csv"

[segments.sales]
name = "Sales"
where = "role == 'Sales'"
"""


def test_load_recipe_reads_paths_relative_to_the_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "pqlhub.toml").write_text(TOML, encoding="utf-8")
    (folder / "people.csv").write_text("id,role\nann,Engineering\nbob,Sales\n")
    monkeypatch.chdir(tmp_path)

    recipe = load_recipe("recipes/pqlhub.toml", plugins=Plugins.of(pqlhub_csv))
    evaluation = evaluate(recipe)

    assert recipe.base_dir == folder
    assert evaluation.as_of == NOW
    assert evaluation.members("Sales") == ("bob",)


def test_recipe_from_dict_reads_paths_relative_to_base_dir(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("id,role\nann,Sales\nbob,Sales\n")
    data = {
        "recipe": {"name": "dict", "min_size": 0},
        "sources": {
            "users": {
                "plugin": "csv",
                "entity": "contact",
                "key": "id",
                "path": "people.csv",
            }
        },
        "segments": {"sales": {"name": "Sales", "where": "role == 'Sales'"}},
    }

    recipe = recipe_from_dict(
        data, plugins=Plugins.of(pqlhub_csv, PeoplePlugin()), base_dir=tmp_path
    )

    assert evaluate(recipe, as_of=NOW).members("Sales") == ("ann", "bob")
