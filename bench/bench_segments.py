"""Measure evaluating the example segments over generated data: time and memory.

It generates companies, contacts and events with `bench/generate.py`, copies
`bench/segments_recipe.toml` beside them and evaluates that recipe in a fresh
interpreter (`bench/measure_evaluation.py`), so that the peak memory reported is
the evaluation's own. It prints the wall time, the peak RSS, the counts, the
engine's own per-stage timings and, last, the same figures as one JSON line.

Generated data is kept under bench/out/, one folder per set of arguments, and
reused while the arguments, the recipe's `as_of` and the generator stay the same.

Usage::

    python bench/bench_segments.py --contacts 100000 [--events-per-contact 10]
        [--keep DIR] [--profile]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
RECIPE = BENCH / "segments_recipe.toml"
GENERATOR = BENCH / "generate.py"
MEASURE = BENCH / "measure_evaluation.py"
STAMP = "bench-data.json"
# What generated data takes on disk, rounded up from a 100,000-contact run, to
# refuse a run that would fill the disk.
BYTES_PER_EVENT = 175
BYTES_PER_CONTACT = 200


class BenchError(Exception):
    """A run that cannot go on; the message says why."""


@dataclass(frozen=True)
class DataSpec:
    """What a generated data folder holds, as far as reusing it goes."""

    contacts: int
    events_per_contact: float
    as_of: str
    generator: str

    @classmethod
    def current(cls, contacts: int, events_per_contact: float) -> DataSpec:
        """Describe the data these arguments, the recipe and the generator give."""
        recipe = tomllib.loads(RECIPE.read_text(encoding="utf-8"))
        digest = hashlib.sha256(GENERATOR.read_bytes()).hexdigest()[:16]
        return cls(contacts, events_per_contact, recipe["recipe"]["as_of"], digest)

    def folder_name(self) -> str:
        """Return the cache folder's name, for example `100000c-10e`."""
        return f"{self.contacts}c-{self.events_per_contact:g}e"

    def as_dict(self) -> dict[str, Any]:
        """Return the spec as it is stamped into the data folder."""
        return {
            "contacts": self.contacts,
            "events_per_contact": self.events_per_contact,
            "as_of": self.as_of,
            "generator": self.generator,
        }


# --------------------------------------------------------------------------- data


def prepare_data(folder: Path, spec: DataSpec) -> bool:
    """Make sure `folder` holds the data `spec` describes, generating it if not.

    The data is generated into a sibling `.partial` folder and renamed when
    complete, so an interrupted run never leaves a folder that looks reusable.

    Returns:
        Whether the data was generated (False: reused).

    Raises:
        BenchError: When the folder holds something else that is not ours to
            replace, the disk is too full, or the generator fails.
    """
    if _stamp_of(folder) == spec.as_dict():
        return False
    if folder.exists() and not _replaceable(folder):
        raise BenchError(
            f"{folder} holds files but no {STAMP}; it was not written by this "
            "benchmark, so it is left alone. Name an empty or new folder."
        )
    # Stale data goes first, so that its space is free for the new.
    shutil.rmtree(folder, ignore_errors=True)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    _check_disk(folder.parent, spec)

    _generate(partial, spec)
    (partial / STAMP).write_text(json.dumps(spec.as_dict(), indent=2) + "\n")
    partial.rename(folder)
    return True


def _stamp_of(folder: Path) -> Any:
    try:
        return json.loads((folder / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _replaceable(folder: Path) -> bool:
    # Our own cache, a folder we stamped before, or an empty one.
    return (
        folder.parent == OUT or (folder / STAMP).exists() or not any(folder.iterdir())
    )


def _check_disk(parent: Path, spec: DataSpec) -> None:
    parent.mkdir(parents=True, exist_ok=True)
    events = spec.contacts * spec.events_per_contact
    needed = events * BYTES_PER_EVENT + spec.contacts * BYTES_PER_CONTACT
    free = shutil.disk_usage(parent).free
    if needed > free:
        raise BenchError(
            f"The data needs about {needed / 1e9:.1f} GB but {parent} has "
            f"{free / 1e9:.1f} GB free; free some space or use --keep elsewhere."
        )


def _generate(folder: Path, spec: DataSpec) -> None:
    command = [
        sys.executable,
        str(GENERATOR),
        f"--contacts={spec.contacts}",
        f"--events-per-contact={spec.events_per_contact:g}",
        f"--as-of={spec.as_of}",
        f"--out={folder}",
    ]
    print(f"generating data into {folder} ...", flush=True)
    if subprocess.run(command, check=False).returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise BenchError("The generator failed; its error is printed above.")


def write_recipe(folder: Path) -> Path:
    """Copy the benchmark recipe into the data folder, where its paths point."""
    target = folder / RECIPE.name
    shutil.copyfile(RECIPE, target)
    return target


# -------------------------------------------------------------------- measuring


def measure(recipe: Path, profile: Path | None = None) -> dict[str, Any]:
    """Evaluate the recipe in a fresh interpreter and return what it measured.

    Raises:
        BenchError: When the evaluation fails or prints no result.
    """
    command = [sys.executable, str(MEASURE), str(recipe)]
    if profile is not None:
        command.append(f"--profile={profile}")
    began = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - began

    *printed, last = done.stdout.splitlines() or [""]
    for line in printed:
        print(line)
    if done.returncode != 0 or not last.startswith("{"):
        raise BenchError(
            f"The evaluation of {recipe} failed (exit code {done.returncode}); "
            "its error is printed above."
        )
    result: dict[str, Any] = json.loads(last)
    result["process_s"] = round(seconds, 3)
    return result


def report(result: dict[str, Any], spec: DataSpec, folder: Path) -> str:
    """Return the human-readable lines of one measurement."""
    stages = ", ".join(f"{name} {s:.2f} s" for name, s in result["timings"].items())
    own = result["peak_rss_mb"] - result["baseline_rss_mb"]
    before, after = result["load_avg"]
    return "\n".join(
        [
            f"segment evaluation of {folder}, as of {spec.as_of}",
            f"  contacts     {result['contacts']:>12,}"
            f"   ({result['accounts']:,} accounts)",
            f"  events       {result['events']:>12,}"
            f"   ({result['events_folded']:,} track calls folded)",
            f"  segments     {result['segments']:>12,}"
            f"   ({result['segment_members']:,} memberships)",
            f"  wall time    {result['wall_s']:>10.2f} s"
            f"   (CPU {result['cpu_s']:.2f} s, recipe load {result['load_s']:.2f} s,"
            f" whole process {result['process_s']:.2f} s)",
            f"  stages       {stages}",
            f"  peak RSS     {result['peak_rss_mb']:>9.0f} MB"
            f"   ({result['baseline_rss_mb']:.0f} MB before evaluating,"
            f" {own:.0f} MB for it)",
            f"  gc           {result['gc_s']:>10.2f} s"
            f"   ({result['gc_collections']:,} collections)",
            f"  machine      {result['cores']} cores, Python {result['python']},"
            f" {result['platform']}; load average {before:.2f} before,"
            f" {after:.2f} after",
        ]
    )


def summary(
    result: dict[str, Any],
    spec: DataSpec,
    generated: bool,
    profiled: dict[str, Any] | None,
) -> str:
    """Return the one-line JSON summary printed last."""
    keys = (
        "contacts",
        "accounts",
        "events",
        "segments",
        "wall_s",
        "cpu_s",
        "peak_rss_mb",
        "timings",
        "gc_s",
        "cores",
        "python",
        "load_avg",
    )
    line: dict[str, Any] = {"bench": "segments"}
    line.update({key: result[key] for key in keys})
    line["events_per_contact"] = spec.events_per_contact
    line["generated"] = generated
    if profiled is not None:
        line["profiled_wall_s"] = profiled["wall_s"]
    return json.dumps(line)


# ---------------------------------------------------------------------- running


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, required=True)
    parser.add_argument("--events-per-contact", type=float, default=10.0)
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="generate into (or reuse) DIR instead of a folder under bench/out/",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also evaluate under cProfile and print the top functions",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> str:
    """Prepare the data, measure, print the report; return the JSON summary."""
    spec = DataSpec.current(args.contacts, args.events_per_contact)
    folder = (args.keep or OUT / spec.folder_name()).resolve()
    generated = prepare_data(folder, spec)
    if not generated:
        print(f"reusing data in {folder}")
    recipe = write_recipe(folder)

    result = measure(recipe)
    print(report(result, spec, folder))
    profiled = None
    if args.profile:
        stats = folder / "segments.prof"
        print(f"\nevaluating again under cProfile (stats saved to {stats}) ...")
        profiled = measure(recipe, stats)
        print(f"wall time under cProfile: {profiled['wall_s']:.2f} s")
    return summary(result, spec, generated, profiled)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line."""
    args = parse_args(argv)
    try:
        line = run(args)
    except BenchError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
