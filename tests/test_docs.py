"""The docs keep up with the code: every hook is documented with its exact signature."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from pqlhub import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("pqlhub_"))


def _signature(name: str) -> str:
    function = getattr(hookspecs, name)
    parameters = ", ".join(
        f"{p.name}: {p.annotation}"
        for p in inspect.signature(function).parameters.values()
    )
    returns = inspect.signature(function).return_annotation
    return f"{name}({parameters}) -> {returns}"


@pytest.mark.parametrize("hook", HOOKS)
def test_docs_hook_has_section_with_exact_signature(hook: str) -> None:
    text = (ROOT / "docs" / "plugins.md").read_text()

    assert f"### `{_signature(hook)}`" in text


def test_docs_readme_commands_are_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"```sh\n(.+?)\n```", readme)

    assert len(commands) >= 2
    assert "pqlhub run pqlhub.toml" in commands[0]
    assert commands[1].endswith(".venv/bin/pytest")
    assert "-r requirements-dev.txt" in commands[1]
    assert "-r requirements-dev.txt" in ci
    assert ci.rstrip().endswith(".venv/bin/pytest")


def test_docs_every_plugin_is_installed_by_the_requirements() -> None:
    plugins = sorted(
        path.name for path in (ROOT / "plugins").iterdir() if path.is_dir()
    )
    for name in ("requirements.txt", "requirements-dev.txt"):
        listed = (ROOT / name).read_text()
        for plugin in plugins:
            assert f"./plugins/{plugin}" in listed, f"{plugin} missing from {name}"
