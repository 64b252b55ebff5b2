"""Every benchmark, against real server processes, on SQLite and PostgreSQL, in one command.

Prints a table with each figure beside its baseline measured in the same run (and the
machine's load average when it was taken), and writes the results as JSON, so that a later
run can be set beside this one with ``--compare``.

Usage::

    python -m bench.run [--quick] [--store sqlite|postgres|both] [--json out.json] [--compare earlier.json]
                        [--only throughput,queued,history]

``--quick`` scales the sizes down (the table says which) to finish in about two minutes on two
cores. PostgreSQL is ``OPENBATCH_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``);
each group of benchmarks gets a database of its own, dropped afterwards. Needs ``wrk``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.harness import ROOT, Row, null_server
from bench.suite import FULL, QUICK, measure_baselines, run_store

GROUPS = ("throughput", "queued", "history")


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{text} {unit}".rstrip()


def render(rows: list[Row], earlier: dict[tuple[str, str], dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("store", "benchmark", "figure", "baseline (same run)", "ratio", "target", "load", "note"):
        table.add_column(column, justify="right" if column in ("figure", "ratio", "load") else "left")
    if earlier:
        table.add_column("earlier", justify="right")
    for row in rows:
        ratio = row.ratio
        target = row.target
        if row.met is not None:
            target = f"[green]{target} ✓[/]" if row.met else f"[red]{target} ✗[/]"
        cells = [
            row.store,
            row.name,
            _fmt(row.value, row.unit),
            f"{_fmt(row.baseline, row.unit)} {row.baseline_name}".strip(),
            "" if ratio is None else f"{ratio:.2f}×",
            target,
            f"{row.load:.1f}",
            row.note,
        ]
        if earlier:
            before = earlier.get((row.store, row.name))
            if before is None:
                cells.append("")
            else:
                change = row.value / before["value"] if before["value"] else float("nan")
                cells.append(f"{_fmt(before['value'], row.unit)} ({change:.2f}×)")
        table.add_row(*cells)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about two minutes on two cores")
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--compare", type=Path, help="an earlier --json file to set beside this run")
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups of {', '.join(GROUPS)}")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if not only <= set(GROUPS):
        parser.error(f"--only takes {', '.join(GROUPS)}")
    sizes = QUICK if args.quick else FULL
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    console = Console(width=None if sys.stdout.isatty() else 220)
    started = time.perf_counter()
    load_before = os.getloadavg()
    with null_server() as (null_url, null_pid):
        base = measure_baselines(null_url, null_pid, sizes.wrk_seconds)
    console.print(
        f"baselines: serial Popen {base.spawn_per_s:,.0f}/s (p50 {base.spawn_p50_ms:.2f} ms); do-nothing endpoint "
        f"{base.null_submit_per_s:,.0f} req/s under wrk, p50 {base.null_p50_ms:.2f} ms"
    )
    rows: list[Row] = []
    for store in stores:
        for group in GROUPS:
            if group in only:
                console.print(f"[dim]{store}: {group}…[/]")
                group_started = time.perf_counter()
                group_rows = run_store(store, sizes, base, {group})
                rows += group_rows
                for row in group_rows:
                    console.print(f"[dim]  {row.name}: {_fmt(row.value, row.unit)} (load {row.load:.1f})[/]")
                console.print(f"[dim]  {time.perf_counter() - group_started:.0f} s[/]")
    elapsed = time.perf_counter() - started
    earlier: dict[tuple[str, str], dict[str, Any]] = {}
    if args.compare:
        earlier = {(r["store"], r["name"]): r for r in json.loads(args.compare.read_text())["rows"]}
    title = (
        f"OpenBatch benchmarks ({'quick' if args.quick else 'full'}), {os.cpu_count()} CPUs, "
        f"load {load_before[0]:.1f} at start, {elapsed:.0f} s"
    )
    console.print(render(rows, earlier, title))
    if args.json:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        document = {
            "mode": "quick" if args.quick else "full",
            "commit": commit,
            "python": sys.version.split()[0],
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
            "load_at_start": load_before,
            "seconds": elapsed,
            "sizes": dataclasses.asdict(sizes),
            "baselines": dataclasses.asdict(base),
            "rows": [{**dataclasses.asdict(r), "ratio": r.ratio} for r in rows],
        }
        args.json.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
