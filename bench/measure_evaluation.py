"""Evaluate one recipe in this process and print what it cost, as one JSON line.

`bench_segments.py` runs it in a fresh interpreter for every measurement, so that
the peak memory it reports belongs to the evaluation and not to the generator or
an earlier run. It works on any recipe by itself too::

    python bench/measure_evaluation.py pqlhub.toml [--profile FILE]

With `--profile`, the evaluation runs under cProfile: the top functions by
cumulative and by own time are printed before the JSON line, and the raw
statistics are saved to FILE for `python -m pstats` or a viewer. Times measured
under the profiler are inflated; measure without it for the figures.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import json
import os
import platform
import pstats
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pqlhub import Evaluation, evaluate, load_recipe

TOP_FUNCTIONS = 25


class GcClock:
    """Adds up the time the cyclic garbage collector spends, through gc.callbacks.

    cProfile does not see collections, and with millions of live containers
    they can cost seconds, so they are timed separately.
    """

    def __init__(self) -> None:
        """Start with nothing counted."""
        self.seconds = 0.0
        self.collections = 0
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        """Note the start or the end of one collection."""
        if phase == "start":
            self._began = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._began
        self.collections += 1


def peak_rss_mb() -> float:
    """Return this process's peak resident set size so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def cpu_seconds() -> float:
    """Return the processor time this process has used so far, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_evaluation(
    recipe_path: Path, profile_path: Path | None
) -> tuple[Evaluation, dict[str, Any]]:
    """Load and evaluate the recipe, timing each part.

    Returns:
        The evaluation, and the costs measured around it.
    """
    began = time.perf_counter()
    recipe = load_recipe(recipe_path)
    loaded = time.perf_counter()
    baseline = peak_rss_mb()

    clock = GcClock()
    gc.callbacks.append(clock)
    profiler = cProfile.Profile() if profile_path else None
    call = functools.partial(evaluate, recipe)
    started, cpu = time.perf_counter(), cpu_seconds()
    evaluation = profiler.runcall(call) if profiler else call()
    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    gc.callbacks.remove(clock)

    if profiler is not None and profile_path is not None:
        profiler.dump_stats(profile_path)
        print_profile(profiler)
    costs = {
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "load_s": round(loaded - began, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "baseline_rss_mb": round(baseline, 1),
        "gc_s": round(clock.seconds, 3),
        "gc_collections": clock.collections,
        "profiled": profiler is not None,
    }
    return evaluation, costs


def print_profile(profiler: cProfile.Profile) -> None:
    """Print the top functions by cumulative time, then by own time."""
    stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
    for order, title in (("cumulative", "cumulative"), ("tottime", "own (tottime)")):
        print(f"=== top {TOP_FUNCTIONS} functions by {title} time ===")
        stats.sort_stats(order).print_stats(TOP_FUNCTIONS)
    sys.stdout.flush()


def describe(evaluation: Evaluation) -> dict[str, Any]:
    """Return the counts of what the evaluation read and found."""
    table = evaluation.table
    return {
        "contacts": len(table),
        "accounts": len(table.account_keys),
        "events": evaluation.events.events,
        "events_folded": evaluation.events.folded,
        "segments": len(evaluation.segments),
        "segment_members": sum(segment.size for segment in evaluation.segments),
        "records_by_source": {read.source: read.records for read in evaluation.reads},
        "skipped": sum(read.skipped for read in evaluation.reads),
        "timings": {
            stage: round(seconds, 3) for stage, seconds in evaluation.timings.items()
        },
    }


def machine() -> dict[str, Any]:
    """Return what the figures depend on besides the code: cores and Python."""
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate the recipe named on the command line and print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="run under cProfile, print the top functions, save the stats to FILE",
    )
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    evaluation, costs = run_evaluation(args.recipe, args.profile)
    result = {**describe(evaluation), **costs, **machine()}
    # The one-minute load average counts this process too, so about 1 on an
    # otherwise idle machine; more means the figures shared the cores.
    result["load_avg"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
