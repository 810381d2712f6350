"""The fault suite (``make faults``; BENCHMARKS.md "Faults"): live cart-recovery journeys on
a production-shaped stack while processes are SIGKILLed, servers stopped and the relay
misbehaves; per fault it prints delivered / duplicated / uncertain / lost /
suppressed-by-mistake / late / runs not completed.

    python -m faults [--journeys N] [--only NAME ...] [--speedup F]
Exit code 1 when a scenario misses its targets (0 duplicated, 0 lost, 0 suppressed by
mistake, every run Completed, uncertain <= 0.2 % of sends).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path

from core.zones import zone_at_local_hour
from faults.scenarios import SCENARIOS, Figures, feed, measure, wait_closed
from faults.stack import FaultStack
from settings import VAR_DIR

COLUMNS = (
    "scenario",
    "journeys",
    "expected",
    "delivered",
    "duplicated",
    "uncertain",
    "lost",
    "unresolved",
    "suppressed_by_mistake",
    "late",
    "not_completed",
    "seconds",
    "window_p50_ms",
    "window_p99_ms",
)
# The worker logs each send's reply-to-commit window (activities/delivery.py).
WINDOW = re.compile(r"reply-to-commit ([0-9.]+) ms")


async def run(journeys: int, only: list[str], speedup: float, wait: float) -> list[Figures]:
    VAR_DIR.mkdir(exist_ok=True)
    stack = FaultStack(
        workdir=Path(tempfile.mkdtemp(prefix="faults-", dir=VAR_DIR)), speedup=speedup
    )
    await stack.start()
    results: list[Figures] = []
    try:
        for i, (name, fault) in enumerate(SCENARIOS.items()):
            if only and not any(o.lower() in name.lower() for o in only):
                continue
            customers = [f"f{i}-{n}" for n in range(journeys)]
            t0 = time.monotonic()
            log_from = stack.worker_log.stat().st_size if stack.worker_log.exists() else 0
            entered = await feed(stack, customers, zone_at_local_hour(12))
            await fault(stack)
            status = await wait_closed(stack, customers, wait)
            figures = await measure(stack, name, entered, status, time.monotonic() - t0)
            figures.window_ms = windows(stack.worker_log, log_from)
            results.append(figures)
            print(row(figures), flush=True)
    finally:
        await stack.close()
    return results


def windows(log: Path, offset: int) -> list[float]:
    """The reply-to-commit windows the worker logged since ``offset`` (its log's size when
    the scenario began; restarts append to the same file)."""
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return [float(m.group(1)) for m in WINDOW.finditer(text)]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def cell(f: Figures, column: str) -> str:
    if column.startswith("window_"):
        p = 50 if column == "window_p50_ms" else 99
        return f"{percentile(f.window_ms, p):.1f}"
    value = getattr(f, column)
    return f"{value:.0f}" if isinstance(value, float) else str(value)


def row(f: Figures) -> str:
    mark = "ok" if f.meets_targets() else "MISSED"
    return " | ".join(cell(f, c) for c in COLUMNS) + f" | {mark}"


def summary(results: list[Figures]) -> str:
    """All scenarios together: sends, uncertain share, and the window over every send."""
    expected = sum(f.expected for f in results)
    uncertain = sum(f.uncertain for f in results)
    windows_ms = [w for f in results for w in f.window_ms]
    return (
        f"all: {expected} sends meant, {sum(f.delivered for f in results)} delivered, "
        f"{sum(f.duplicated for f in results)} duplicated, {uncertain} uncertain "
        f"({100 * uncertain / max(expected, 1):.2f} %), {sum(f.lost for f in results)} lost; "
        f"reply-to-commit over {len(windows_ms)} sends: p50 {percentile(windows_ms, 50):.1f} ms, "
        f"p99 {percentile(windows_ms, 99):.1f} ms, max {max(windows_ms, default=0):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--journeys", type=int, default=50, help="journeys per scenario")
    parser.add_argument("--only", nargs="*", default=[], help="scenarios whose name contains")
    parser.add_argument(
        "--speedup", type=float, default=10080, help="JOURNEY_SPEEDUP (7 d -> 60 s)"
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds for runs to close")
    args = parser.parse_args()
    print(" | ".join(COLUMNS) + " | targets", flush=True)
    results = asyncio.run(run(args.journeys, args.only, args.speedup, args.timeout))
    print(summary(results), flush=True)
    sys.exit(0 if all(f.meets_targets() for f in results) else 1)


if __name__ == "__main__":
    main()
