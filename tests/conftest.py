"""Fixtures for the core's tests: a CLI runner over real subprocesses, and installers
of throwaway plugin distributions."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from pqlhub.redaction import forget_secrets

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Result:
    """What a `pqlhub` subprocess did."""

    code: int
    stdout: str
    stderr: str


class Cli:
    """Runs `python -m pqlhub` in a subprocess with a controlled environment."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env: dict[str, str] = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("PQLHUB_")
        }
        self.paths: list[Path] = []

    def add_path(self, path: Path) -> None:
        """Put a folder (a fake site-packages) on the subprocess's sys.path."""
        self.paths.append(path)

    def __call__(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> Result:
        environment = dict(self.env)
        environment.update(env or {})
        if self.paths:
            extra = os.pathsep.join(str(path) for path in self.paths)
            current = environment.get("PYTHONPATH")
            environment["PYTHONPATH"] = (
                f"{extra}{os.pathsep}{current}" if current else extra
            )
        done = subprocess.run(
            [sys.executable, "-m", "pqlhub", *args],
            cwd=self.cwd,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A `pqlhub` command runner working in a fresh folder."""
    return Cli(tmp_path)


Installer = Callable[..., Path]


@pytest.fixture
def install_plugin(tmp_path: Path) -> Installer:
    """Install a throwaway plugin distribution into a fake site-packages folder.

    The returned function takes the distribution name, the module's source code
    and the entry-point name, writes the module and a `.dist-info` with its
    `pqlhub` entry point, and returns the folder to put on `sys.path`.
    """
    site = tmp_path / "site-packages"
    site.mkdir(exist_ok=True)

    def install(
        distribution: str, module_source: str, entry_name: str, version: str = "1.2.3"
    ) -> Path:
        module = distribution.replace("-", "_")
        (site / f"{module}.py").write_text(textwrap.dedent(module_source))
        info = site / f"{module}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
        )
        (info / "entry_points.txt").write_text(f"[pqlhub]\n{entry_name} = {module}\n")
        return site

    return install


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    yield
    forget_secrets()
