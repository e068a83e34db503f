"""The plugin's registration and the source's config schema."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

import pluggy
import pytest
from jsonschema import Draft202012Validator

import pqlhub_analytics
from pqlhub import hookspecs
from pqlhub_analytics import SegmentFilesSource


def test_entry_point_registered_in_the_pqlhub_group() -> None:
    (point,) = [
        point for point in entry_points(group="pqlhub") if point.name == "analytics"
    ]

    assert point.value == "pqlhub_analytics"
    assert point.load() is pqlhub_analytics


def test_hook_provides_the_segment_files_source() -> None:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(pqlhub_analytics)

    provided = manager.hook.pqlhub_source_types()

    assert provided == [[SegmentFilesSource]]


def test_source_declares_name_and_capabilities() -> None:
    capabilities = SegmentFilesSource.capabilities

    assert SegmentFilesSource.name == "segment-files"
    assert capabilities.entities == frozenset({"event"})
    assert capabilities.incremental
    assert capabilities.ordered


def test_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(SegmentFilesSource.config_schema)


@pytest.mark.parametrize(
    "config",
    [
        {"path": "events.jsonl"},
        {"path": "data/*.jsonl.gz", "types": ["track"]},
        {"path": "e.jsonl", "types": ["page", "screen", "alias", "group"]},
    ],
    ids=["path-only", "one-type", "other-types"],
)
def test_schema_accepts_configs(config: dict[str, Any]) -> None:
    validator = Draft202012Validator(SegmentFilesSource.config_schema)

    assert list(validator.iter_errors(config)) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"path": "e.jsonl", "paths": "x"}, "Additional properties are not allowed"),
        ({}, "'path' is a required property"),
        ({"path": ""}, "should be non-empty"),
        ({"path": "e.jsonl", "types": ["click"]}, "'click' is not one of"),
        ({"path": "e.jsonl", "types": []}, "should be non-empty"),
        ({"path": "e.jsonl", "types": ["track", "track"]}, "non-unique elements"),
    ],
    ids=["unknown-key", "no-path", "empty-path", "unknown-type", "no-types", "repeat"],
)
def test_schema_rejects_configs(config: dict[str, Any], message: str) -> None:
    validator = Draft202012Validator(SegmentFilesSource.config_schema)

    errors = [error.message for error in validator.iter_errors(config)]

    assert len(errors) == 1
    assert message in errors[0]


def test_schema_describes_every_key() -> None:
    properties = SegmentFilesSource.config_schema["properties"]

    assert set(properties) == {"path", "types"}
    assert all(spec["description"].endswith(".") for spec in properties.values())
