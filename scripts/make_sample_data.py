"""Regenerate the bundled example data in `data/` at the repository root.

The example recipe runs over these files; they are committed gzip-compressed
to keep the repository small. The generator is deterministic, so running this
again gives the same bytes.

Usage::

    python scripts/make_sample_data.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
CONTACTS = 20_000
EVENTS_PER_CONTACT = 8
SEED = 7
AS_OF = "2026-12-01T00:00:00Z"
EVENT_FILES = 4


def directory_size(directory: Path) -> int:
    """Return the total size in bytes of the files under `directory`."""
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def main() -> int:
    """Write the sample data and print what was written."""
    # The generator lives beside the benchmarks, not in the installed package.
    sys.path.insert(0, str(ROOT))
    from bench.generate import format_summary, generate

    summary = generate(
        DATA,
        contacts=CONTACTS,
        events_per_contact=EVENTS_PER_CONTACT,
        seed=SEED,
        as_of=AS_OF,
        gzip=True,
        event_files=EVENT_FILES,
        gzip_csv=True,
    )
    print(format_summary(summary))
    print(f"{DATA} holds {directory_size(DATA) / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
