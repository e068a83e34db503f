"""Progress lines: shown on a terminal, never when output goes to a file or pipe."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _example(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pqlhub.toml", tmp_path / "pqlhub.toml")
    (tmp_path / "data").symlink_to(ROOT / "data")
    return tmp_path


def test_progress_shows_reads_and_deliveries_on_a_terminal(tmp_path: Path) -> None:
    folder = _example(tmp_path)
    leader, follower = pty.openpty()
    done = subprocess.run(
        [sys.executable, "-m", "pqlhub", "run", "pqlhub.toml"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        timeout=120,
        check=False,
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    text = shown.decode()

    assert done.returncode == 0
    assert "Reading users: 20,000 records" in text
    assert "Reading product: 160,000 records" in text
    assert "qualified-to-spreadsheet: 10,192/10,192 changes" in text


def test_progress_stays_quiet_when_not_a_terminal(tmp_path: Path) -> None:
    folder = _example(tmp_path)

    done = subprocess.run(
        [sys.executable, "-m", "pqlhub", "run", "pqlhub.toml"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "Reading" not in done.stderr
    assert "changes (" not in done.stderr
