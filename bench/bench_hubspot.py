"""Measure how close the HubSpot destination comes to HubSpot's ten-second limit.

It writes a recipe and a CSV of contacts into a temporary folder, starts a fake
HubSpot in this process that allows 100 requests per rolling 10 seconds (the Free
and Starter limit), runs `pqlhub run` against it in a subprocess, and reads the
fake's own record of the requests: how many, over how long, how many it throttled.

Usage::

    .venv/bin/python bench/bench_hubspot.py [--contacts 12000] [--rate-limit 100]

The last line printed is the same figures as one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pqlhub_hubspot.fake import ALL_SCOPES, FakeHubSpot, RecordedRequest

WINDOW = 10.0
TOKEN = "pat-na1-bench-3f9c0e2b"
ROLES = ("Engineering", "Sales", "Marketing", "Product")
PLANS = ("free", "trial", "pro")

RECIPE = """\
[recipe]
name = "bench-hubspot"
min_size = 0

[sources.people]
plugin = "csv"
entity = "contact"
path = "contacts.csv"
key = "id"
fields = {{ seats = "integer" }}

[dimensions]
jobRole = {{ field = "job_role" }}

[segments.trial]
name = "Trial: {{jobRole}}"
where = "plan == 'trial'"

[segments.pro]
name = "Pro: {{jobRole}}"
where = "plan == 'pro'"

[segments.hot]
name = "Hot Trial"
where = "plan == 'trial' and seats >= 8"

[destinations.crm]
plugin = "hubspot"
token = {{ env = "HUBSPOT_TOKEN" }}
base_url = "{base_url}"
rate_limit = {rate_limit}

[[syncs]]
name = "contacts"
destination = "crm"
segments = ["trial", "pro"]
on_enter = {{ action = "upsert_contact" }}
fields = {{ email = "email", firstname = "firstname", jobtitle = "job_role" }}

[[syncs]]
name = "segments"
destination = "crm"
segments = ["trial", "pro", "hot"]
on_enter = {{ action = "set_segments" }}
on_exit = {{ action = "set_segments" }}
fields = {{ email = "email" }}

[[syncs]]
name = "lists"
destination = "crm"
segments = ["trial"]
on_enter = {{ action = "add_to_list" }}
on_exit = {{ action = "remove_from_list" }}
fields = {{ email = "email" }}

[[syncs]]
name = "tasks"
destination = "crm"
segments = ["hot"]
on_enter = {{ action = "create_task", subject = "Call {{firstname}}", \
owner_id = "7001" }}
fields = {{ email = "email", firstname = "firstname" }}
"""


def write_contacts(path: Path, count: int) -> None:
    """Write contacts of four roles on three plans; a fifth of trials are hot."""
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "email", "firstname", "job_role", "plan", "seats"])
        for n in range(count):
            writer.writerow(
                [
                    f"u{n:06d}",
                    f"user{n:06d}@example.com",
                    f"Name{n % 97}",
                    ROLES[n % len(ROLES)],
                    PLANS[n // len(ROLES) % len(PLANS)],
                    n % 10,
                ]
            )


def run_pqlhub(folder: Path) -> tuple[dict[str, Any], float]:
    """Run `pqlhub run` on the folder's recipe; return its JSON and wall time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PQLHUB_")}
    env["HUBSPOT_TOKEN"] = TOKEN
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pqlhub", "run", "recipe.toml", "--format", "json"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"pqlhub run exited {done.returncode}.")
    return json.loads(done.stdout), wall


def busiest_window(times: Sequence[float]) -> int:
    """Return the most requests that arrived within any `WINDOW` seconds."""
    most, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= WINDOW:
            start += 1
        most = max(most, end - start + 1)
    return most


def measure(requests: Sequence[RecordedRequest], limit: int) -> dict[str, Any]:
    """Summarise the fake's record of a delivery."""
    times = sorted(r.time for r in requests)
    span = times[-1] - times[0]
    allowed = limit / WINDOW
    # The limit lets a request through only when the one `limit` places before
    # it arrived at least WINDOW seconds earlier, so the mean of those gaps is
    # what a sender's pace is measured by: WINDOW is as fast as anyone can go.
    gaps = [later - sooner for sooner, later in zip(times, times[limit:], strict=False)]
    sustained = limit / statistics.fmean(gaps) if gaps else 0.0
    ideal = WINDOW * max(0, -(-len(times) // limit) - 1)
    paths = Counter(f"{r.method} {_shape(r.path)}" for r in requests)
    return {
        "requests": len(times),
        "throttled": sum(r.status == 429 for r in requests),
        "delivery_s": round(span, 2),
        "rps": round(len(times) / span, 2) if span else 0.0,
        "sustained_rps": round(sustained, 2),
        "allowed_rps": allowed,
        "sustained_pct": round(100 * sustained / allowed, 1),
        "ideal_delivery_s": ideal,
        "gap_s": {
            "min": round(min(gaps), 2) if gaps else None,
            "median": round(statistics.median(gaps), 2) if gaps else None,
            "max": round(max(gaps), 2) if gaps else None,
        },
        "busiest_window": busiest_window(times),
        "paths": dict(paths.most_common()),
    }


def _shape(path: str) -> str:
    """Replace ids and names in a path with placeholders, to count by endpoint."""
    parts = path.split("/")
    if path.startswith("/crm/v3/lists/") and len(parts) > 4:
        if parts[4] == "object-type-id":
            return "/crm/v3/lists/object-type-id/0-1/name/{name}"
        parts[4] = "{listId}"
    return "/".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the figures, and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=12_000)
    parser.add_argument(
        "--rate-limit", type=int, default=100, help="requests per 10 s (fake, recipe)"
    )
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="skip checking each exchange against HubSpot's OpenAPI files",
    )
    args = parser.parse_args(argv)
    if args.no_check:
        os.environ["PQLHUB_HUBSPOT_SPECS"] = ""

    load_before = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory() as temp,
        FakeHubSpot(
            tokens={TOKEN: ALL_SCOPES},
            rate_limit=args.rate_limit,
            window_seconds=WINDOW,
        ) as hub,
    ):
        folder = Path(temp)
        write_contacts(folder / "contacts.csv", args.contacts)
        recipe = RECIPE.format(base_url=hub.base_url, rate_limit=args.rate_limit)
        (folder / "recipe.toml").write_text(recipe, encoding="utf-8")
        report, wall = run_pqlhub(folder)
        figures = measure(hub.requests, args.rate_limit)
        violations = len(hub.violations)

    changes = {s["sync"]: s["done"] for s in report["syncs"]}
    result = {
        "bench": "hubspot",
        "contacts": args.contacts,
        "rate_limit": args.rate_limit,
        **figures,
        "changes": changes,
        "changes_per_s": round(sum(changes.values()) / figures["delivery_s"], 1),
        "run_s": round(wall, 2),
        "spec_violations": violations,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "date": time.strftime("%Y-%m-%d"),
    }
    _print(result)
    print(json.dumps(result))
    return 0


def _print(result: dict[str, Any]) -> None:
    print(
        f"requests        {result['requests']:,} in {result['delivery_s']:.1f} s of "
        f"delivery ({result['rps']:.2f}/s overall; the whole run took "
        f"{result['run_s']:.1f} s)"
    )
    gap = result["gap_s"]
    print(
        f"sustained rate  {result['sustained_rps']:.2f}/s: "
        f"{result['sustained_pct']:.1f}% of the {result['allowed_rps']:g}/s the "
        f"limit allows (each request and the {result['rate_limit']}th after it "
        f"arrived {gap['min']}-{gap['max']} s apart, median {gap['median']} s)"
    )
    print(
        f"least possible  {result['ideal_delivery_s']:g} s for "
        f"{result['requests']:,} requests under the limit"
    )
    print(
        f"throttled       {result['throttled']} answered 429; busiest 10 s window "
        f"held {result['busiest_window']} requests"
    )
    print(
        f"changes         {sum(result['changes'].values()):,} "
        f"({result['changes_per_s']:,.0f}/s): "
        + ", ".join(f"{sync} {done:,}" for sync, done in result["changes"].items())
    )
    for path, count in result["paths"].items():
        print(f"  {count:5,}  {path}")
    print(
        f"machine         {result['cores']} cores, Python {result['python']}; load "
        f"average {result['load_before']} before, {result['load_after']} after; "
        f"{result['spec_violations']} OpenAPI violations"
    )


if __name__ == "__main__":
    raise SystemExit(main())
