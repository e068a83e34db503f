"""Progress lines on a terminal (never in a file or pipe), and the run history."""

from __future__ import annotations

import json
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


def test_history_lists_runs_newest_first(tmp_path: Path) -> None:
    folder = _example(tmp_path)
    for _ in range(2):
        subprocess.run(
            [sys.executable, "-m", "pqlhub", "run", "pqlhub.toml"],
            cwd=folder,
            capture_output=True,
            check=True,
            timeout=120,
        )

    done = subprocess.run(
        [sys.executable, "-m", "pqlhub", "history", "pqlhub.toml", "--format", "json"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    runs = json.loads(done.stdout)["runs"]
    assert [run["id"] for run in runs] == [2, 1]
    assert [run["status"] for run in runs] == ["complete", "complete"]
    sent = [run["counts"]["syncs"]["qualified-to-spreadsheet"]["done"] for run in runs]
    assert sent == [0, 10192]
