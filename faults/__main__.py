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
    "suppressed_by_mistake",
    "late",
    "not_completed",
    "seconds",
)


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
            entered = await feed(stack, customers, zone_at_local_hour(12))
            await fault(stack)
            status = await wait_closed(stack, customers, wait)
            figures = await measure(stack, name, entered, status, time.monotonic() - t0)
            results.append(figures)
            print(row(figures), flush=True)
    finally:
        await stack.close()
    return results


def row(f: Figures) -> str:
    values = [getattr(f, c) for c in COLUMNS]
    cells = [f"{v:.0f}" if isinstance(v, float) else str(v) for v in values]
    mark = "ok" if f.meets_targets() else "MISSED"
    return " | ".join(cells) + f" | {mark}"


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
    sys.exit(0 if all(f.meets_targets() for f in results) else 1)


if __name__ == "__main__":
    main()
