"""Recipes: TOML parsing, schema and plugin-schema checks, secrets."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pqlhub import (
    RecipeInvalidError,
    RecipeSyntaxError,
    Source,
    SourceCapabilities,
    hookimpl,
)
from pqlhub.plugins import Plugins
from pqlhub.recipe import load_recipe, recipe_from_dict
from pqlhub.redaction import RedactingFilter, Secret, redact

from .conftest import Cli, Installer

SECRET = "s3cr3t-value-9f2c"

LEAKY_SOURCE = """
from pqlhub import DataError, Source, SourceCapabilities, hookimpl

SCHEMA = {
    "type": "object",
    "properties": {
        "url": {"type": "string"},
        "password": {"$ref": "https://pqlhub.dev/schemas/defs.schema.json#/$defs/secret"},
    },
    "required": ["url", "password"],
    "additionalProperties": False,
}

class Leaky(Source):
    name = "leaky"
    config_schema = SCHEMA
    capabilities = SourceCapabilities(entities=frozenset({"contact"}))

    def read(self, cursor=None):
        password = self.config["password"].reveal()
        self.context.logger.info("Connecting with password %s", password)
        raise DataError(self.config["url"], None, f"Login refused for {password}.")
        yield

@hookimpl
def pqlhub_source_types():
    return [Leaky]
"""

LEAKY_RECIPE = """
[recipe]
name = "leak"

[sources.db]
plugin = "leaky"
entity = "contact"
key = "email"
url = "postgres://db"
password = { env = "DB_PASSWORD" }
"""

PASSWORD_SCHEMA = {
    "type": "object",
    "properties": {
        "password": {
            "$ref": "https://pqlhub.dev/schemas/defs.schema.json#/$defs/secret"
        },
        "batch": {"type": "integer"},
    },
    "additionalProperties": False,
}


class _Db(Source):
    name = "db"
    config_schema = PASSWORD_SCHEMA
    capabilities = SourceCapabilities(entities=frozenset({"contact", "account"}))

    def read(self, cursor: Any = None) -> Any:
        return iter(())


def _plugins() -> Plugins:
    return Plugins.of(SimpleNamespace(pqlhub_source_types=hookimpl(lambda: [_Db])))


def _recipe(**source: Any) -> dict[str, Any]:
    block = {"plugin": "db", "entity": "contact", "key": "email", **source}
    return {"recipe": {"name": "test"}, "sources": {"users": block}}


def _problems(data: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(RecipeInvalidError) as caught:
        recipe_from_dict(data, plugins=_plugins(), env=env or {})
    return [str(problem) for problem in caught.value.problems]


def test_validate_names_three_separate_faults(cli: Cli) -> None:
    (cli.cwd / "recipe.toml").write_text(
        """
[recipe]
name = "faulty"

[sources.users]
plugin = "csv"
entity = "contact"
key = "email"
path = "users.csv"
delimiter = 5

[sources.companies]
plugin = "spreadsheet"
entity = "account"
key = "domain"

[segments.qualified]
where = "plan == 'pro'"
"""
    )

    result = cli("validate", "recipe.toml")

    assert result.code == 1
    assert result.stderr.startswith(
        "Error: Recipe recipe.toml is invalid (3 problems)."
    )
    assert "sources.companies.plugin: No installed plugin provides the source " in (
        result.stderr
    )
    assert "sources.users.delimiter: expected a string, found an integer 5." in (
        result.stderr
    )
    assert "segments.qualified.name: is required but missing." in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_accepts_a_valid_recipe(cli: Cli) -> None:
    (cli.cwd / "recipe.toml").write_text(
        '[recipe]\nname = "ok"\n[sources.users]\nplugin = "csv"\n'
        'entity = "contact"\nkey = "email"\npath = "users.csv"\n'
    )

    result = cli("validate", "recipe.toml")

    assert result.code == 0, result.stderr
    assert "Recipe recipe.toml is valid: 1 source" in result.stdout


def test_validate_reports_toml_syntax_error_with_line_and_column(cli: Cli) -> None:
    (cli.cwd / "broken.toml").write_text('[recipe]\nname = "x"\nplugin = = "csv"\n')

    result = cli("validate", "broken.toml")

    assert result.code == 1
    assert "Error: Recipe broken.toml is not valid TOML" in result.stderr
    assert "(line 3, column 10)" in result.stderr


def test_validate_of_missing_file_names_it(cli: Cli) -> None:
    result = cli("validate", "nowhere.toml")

    assert result.code == 1
    assert "Error: Recipe file 'nowhere.toml' does not exist." in result.stderr


def test_unknown_command_is_a_usage_error(cli: Cli) -> None:
    result = cli("frobnicate")

    assert result.code == 2
    assert "No such command 'frobnicate'" in result.stderr


def test_toml_error_at_end_of_document(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('[recipe]\nname = "x')

    with pytest.raises(RecipeSyntaxError) as caught:
        load_recipe(path, plugins=_plugins())

    assert caught.value.line == 2
    assert str(path) in str(caught.value)


def test_recipe_unknown_key_lists_allowed_keys() -> None:
    problems = _problems(_recipe(password={"env": "DB_PASSWORD"}, bacth=5))

    assert problems == [
        "sources.users.bacth: unknown key. Allowed keys: batch, password."
    ]


def test_recipe_contact_source_needs_a_key() -> None:
    data = _recipe()
    del data["sources"]["users"]["key"]

    assert _problems(data) == ["sources.users.key: is required but missing."]


def test_recipe_entity_the_source_cannot_read() -> None:
    problems = _problems(_recipe(entity="event"))

    assert problems == [
        "sources.users.entity: The 'db' source reads account, contact, not 'event'."
    ]


def test_secret_from_environment_is_resolved() -> None:
    recipe = recipe_from_dict(
        _recipe(password={"env": "DB_PASSWORD"}),
        plugins=_plugins(),
        env={"DB_PASSWORD": SECRET},
    )

    password = recipe.sources["users"].config["password"]
    assert isinstance(password, Secret)
    assert password.reveal() == SECRET
    assert SECRET not in repr(recipe)
    assert redact(f"token {SECRET}!") == "token ***!"


def test_secret_from_file_is_resolved_relative_to_recipe(tmp_path: Path) -> None:
    (tmp_path / "db.secret").write_text(SECRET + "\n")

    recipe = recipe_from_dict(
        _recipe(password={"file": "db.secret"}), plugins=_plugins(), base_dir=tmp_path
    )

    assert recipe.sources["users"].config["password"].reveal() == SECRET


def test_secret_unset_variable_is_named() -> None:
    problems = _problems(_recipe(password={"env": "DB_PASSWORD"}))

    assert problems == [
        "sources.users.password: The environment variable 'DB_PASSWORD' is not set."
    ]


def test_secret_written_as_value_is_refused_without_echoing_it() -> None:
    problems = _problems(_recipe(password=SECRET))

    assert len(problems) == 1
    assert problems[0].startswith("sources.users.password: must be a secret reference")
    assert SECRET not in problems[0]


def test_secret_never_reaches_stderr_or_logs(
    cli: Cli, install_plugin: Installer
) -> None:
    cli.add_path(install_plugin("pqlhub-leaky", LEAKY_SOURCE, "leaky"))
    (cli.cwd / "recipe.toml").write_text(LEAKY_RECIPE)

    result = cli(
        "-v", "--log-format", "json", "run", "recipe.toml", env={"DB_PASSWORD": SECRET}
    )

    assert result.code == 1
    assert "Error: postgres://db: Login refused for ***." in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert any(r["message"] == "Connecting with password ***" for r in records)
    assert SECRET not in result.stderr
    assert SECRET not in result.stdout


def test_secret_never_reaches_captured_log_records(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recipe = recipe_from_dict(
        _recipe(password={"env": "DB_PASSWORD"}),
        plugins=_plugins(),
        env={"DB_PASSWORD": SECRET},
    )
    secret = recipe.sources["users"].config["password"]
    caplog.handler.addFilter(RedactingFilter())

    with caplog.at_level(logging.INFO, logger="pqlhub"):
        logging.getLogger("pqlhub.test").info(
            "Using %s and %r", secret.reveal(), secret
        )

    assert caplog.records
    assert all(SECRET not in record.getMessage() for record in caplog.records)
    assert "Using *** and Secret('env:DB_PASSWORD')" in caplog.text


def test_debug_shows_traceback_without_secret(
    cli: Cli, install_plugin: Installer
) -> None:
    cli.add_path(install_plugin("pqlhub-leaky", LEAKY_SOURCE, "leaky"))
    (cli.cwd / "recipe.toml").write_text(LEAKY_RECIPE)

    result = cli("--debug", "run", "recipe.toml", env={"DB_PASSWORD": SECRET})

    assert result.code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert SECRET not in result.stderr
