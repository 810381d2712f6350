"""``python -m bench [--size smoke|full] [--db sqlite|postgres] [--only report|sends|burst|exit]``

Starts its own Temporal dev server, SMTP catcher, store database, journey worker, floor worker
and HTTP API; measures; prints one Markdown table (BENCHMARKS.md explains every row).
``smoke`` takes seconds and only proves the benchmark still runs; ``full`` is what
BENCHMARKS.md reports (``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

from bench import report_scale
from bench.measure import Measurements
from bench.profile import Profiler
from bench.report import ROW_IDS, Row, markdown, write_json
from bench.sizes import SIZES, Size
from bench.stack import bench_stack


async def run(
    size: Size, *, db: str, keep: bool, only: str | None = None, profile: Path | None = None
) -> tuple[list[Row], list[str]]:
    failures: list[str] = []
    if only == "report":  # PostgreSQL only: no Temporal, worker or API needed
        found = await report_scale.measure(sends=size.report_sends, orders=size.report_orders)
        return [report_scale.row(found)], failures
    async with bench_stack(db=db, keep=keep) as stack:
        if keep:
            print(f"[bench] keeping {stack.workdir}", file=sys.stderr)
        measurements = Measurements(size, stack, run_tag=f"{int(time.time()) % 100000}")
        profiler = Profiler(profile) if profile is not None else None
        if profiler is not None:  # the worker, the API, and this process (row 4's sends)
            profiler.attach("worker", stack.worker.pid)
            profiler.attach("api", stack.api.pid)
            profiler.attach("bench", os.getpid())
        phases = measurements.in_order()
        if only == "sends":  # (4) alone: the send path and its reply-to-commit window
            phases = [(name, body) for name, body in phases if name.startswith("4 ")]
        if only == "burst":  # (8) alone: the API taking a burst, the journeys catching up
            phases = [(name, body) for name, body in phases if name.startswith("8 ")]
        if only == "exit":  # (3) at half of (1)'s rate, as the full run measures it
            wanted = ("warm-up", "1 ", "3 ")
            phases = [(name, body) for name, body in phases if name.startswith(wanted)]
        for name, body in phases:
            t0 = time.monotonic()
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            try:
                await body()
            except Exception as exc:  # one broken phase must not hide the others
                failures.append(f"{name}: {exc!r}")
                traceback.print_exc()
            elapsed = time.monotonic() - t0
            print(f"[bench] {name} took {elapsed:.1f} s", file=sys.stderr, flush=True)
        if profiler is not None:
            for text in await profiler.stop():
                print(f"\n{text}", file=sys.stderr)
            print(f"[bench] profiles in {profile}", file=sys.stderr)
    return measurements.rows, failures


# Longer than the ~60-line guide: the command line's flags, one add_argument each, then the run
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--size", choices=sorted(SIZES), default=os.environ.get("BENCH_SIZE", "full")
    )
    parser.add_argument(
        "--db", choices=("sqlite", "postgres"), default=os.environ.get("BENCH_DB", "sqlite")
    )
    parser.add_argument("--entries", type=int, help="override the size's (1) customers")
    parser.add_argument("--burst", type=int, help="override the size's (8) cart events")
    parser.add_argument(
        "--in-flight", type=int, help="override the size's calls in flight (1, 4: 64 full, 8 smoke)"
    )
    parser.add_argument(
        "--footprint",
        help="override the size's sleeping-run counts for (6), e.g. 10000,50000 (cumulative)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument(
        "--only",
        choices=("report", "sends", "burst", "exit"),
        help="only this measurement (report: 7, PostgreSQL; sends: 4, burst: 8, exit: 1 then "
        "3 at half its rate; on --db)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, databases)")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the worker, the API and this process with py-spy; top entries to DIR",
    )
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    if args.entries:
        size = replace(size, entries=args.entries)
    if args.burst:
        size = replace(size, burst_events=args.burst)
    if args.in_flight:
        size = replace(size, concurrency=args.in_flight)
    if args.footprint:
        size = replace(size, footprint=tuple(int(x) for x in args.footprint.split(",")))
    t0 = time.monotonic()
    load_before = os.getloadavg()[0]
    rows, failures = asyncio.run(
        run(size, db=args.db, keep=args.keep, only=args.only, profile=args.profile)
    )
    meta = {
        "size": args.size,
        "db": "postgres" if args.only == "report" else args.db,  # (7) is PostgreSQL only
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "seconds": round(time.monotonic() - t0, 1),
        "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "failures": failures,
    }
    print(
        f"\nsize={args.size} store={meta['db']} cpus={os.cpu_count()} took {meta['seconds']} s, "
        f"load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after\n"
    )
    print(markdown(rows))
    wanted = {
        None: ROW_IDS,
        "report": ("7-report",),
        "sends": ("4-send-pool", "4-send-per-message", "4-send-step", "4-send-window"),
        "burst": ("8-burst",),
        "exit": ("1-cpu", "1-entry", "3-purchase-exit"),
    }[args.only]
    missing = [rid for rid in wanted if rid not in {r.id for r in rows}]
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    if missing:
        print(f"rows missing: {', '.join(missing)}", file=sys.stderr)
    if args.json:
        write_json(rows, args.json, meta)
    return 1 if failures or missing else 0


if __name__ == "__main__":
    sys.exit(main())
