"""Scale-out (issue 18 item 5): two worker processes on one task queue and two API processes
on their own ports, against one dev server and PostgreSQL. Half the customers enter through
each API; one worker is SIGKILLed while the sends are under way and not started again, so
the other finishes the work. Afterwards it counts what the fault suite counts (every email
once per step, by Message-ID at the relay; every run Completed), the sweep's schedules (one,
though both workers created it at start) and the sweep's runs for two days backfilled (one
per day).

    python -m faults.scale_out [--journeys N] [--speedup F]
Exit code 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from temporalio.client import (
    Client,
    ScheduleBackfill,
    ScheduleOverlapPolicy,
    WorkflowExecutionStatus,
)

from core.zones import zone_at_local_hour
from faults.scenarios import Figures, feed, measure, wait_closed
from faults.stack import FaultStack
from settings import VAR_DIR
from starter.schedule import SCHEDULE_ID
from testkit.waiting import eventually

SENT_BEFORE_KILL = 5  # sends the second worker makes before it is SIGKILLed
SWEEP_DAYS = 2  # days of the daily sweep backfilled at the end


@dataclass
class ScaleOut:
    figures: Figures
    schedules: list[str]  # ids of the schedules on the server
    sweeps: dict[str, str]  # the sweep's runs for the backfilled days: workflow id -> status
    sent_by_worker: dict[str, int]  # emails each worker sent (from its log)
    worker_alive: bool  # the worker not killed was still running at the end

    def meets_targets(self) -> bool:
        return (
            self.figures.meets_targets()
            and self.figures.delivered + self.figures.uncertain == self.figures.expected
            and self.schedules == [SCHEDULE_ID]
            and len(self.sweeps) == SWEEP_DAYS
            and all(s == "COMPLETED" for s in self.sweeps.values())
            and all(n > 0 for n in self.sent_by_worker.values())
            and self.worker_alive
        )


async def log_of(stack: FaultStack, name: str) -> str:
    path = stack.workdir / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def polling(log: str) -> bool:
    return "worker polling task queue" in log


def sent(log: str) -> int:
    """Emails a worker sent, by its log (activities/delivery.py logs each: ``sent <key> to
    customer <id> (reply-to-commit ...)``)."""
    return len(re.findall(r'"message": "sent \S+ to customer', log))


async def schedule_ids(client: Client) -> list[str]:
    return sorted([s.id async for s in await client.list_schedules()])


async def sweep_runs(client: Client) -> dict[str, str]:
    runs: dict[str, str] = {}
    async for w in client.list_workflows('WorkflowType = "DailySweep"'):
        runs[w.id] = w.status.name if w.status else "UNKNOWN"
    return runs


# Longer than the ~60-line guide: one fault scenario in order: feed two APIs, kill a worker,
# measure, backfill the sweep
async def run(journeys: int, speedup: float, wait: float) -> ScaleOut:
    VAR_DIR.mkdir(exist_ok=True)
    stack = FaultStack(
        workdir=Path(tempfile.mkdtemp(prefix="scale-out-", dir=VAR_DIR)),
        speedup=speedup,
        workers=2,
        apis=2,
    )
    await stack.start()
    try:
        client = stack.client
        assert client is not None
        # Both workers poll before anyone enters (a worker takes a while to start on a loaded
        # machine), so both take their share from the first send.
        for name in ("worker", "worker2"):
            started = await eventually(partial(log_of, stack, name), polling, wait)
            if not polling(started):
                raise RuntimeError(f"{name} never polled: {stack.workdir / (name + '.log')}")
        urls = stack.api_urls
        customers = [f"s-{n}" for n in range(journeys)]
        halves = [customers[i :: len(urls)] for i in range(len(urls))]
        t0 = time.monotonic()
        zone = zone_at_local_hour(12)
        fed = await asyncio.gather(
            *(feed(stack, h, zone, u) for h, u in zip(halves, urls, strict=True))
        )
        entered = {cid: at for part in fed for cid, at in part.items()}
        # Killed once it has sent its share of the first step, while the rest is under way.
        await eventually(lambda: log_of(stack, "worker2"), lambda t: sent(t) >= SENT_BEFORE_KILL)
        stack.procs["worker2"].kill()  # and not started again
        killed_sent = sent(await log_of(stack, "worker2"))
        status = await wait_closed(stack, customers, wait)
        figures = await measure(stack, "two workers, one SIGKILLed", entered, status, 0)
        figures.seconds = time.monotonic() - t0
        schedules = await eventually(lambda: schedule_ids(client), bool)
        # Two days of the sweep, as the schedule would have started them: one run per day.
        now = datetime.now(UTC)
        handle = client.get_schedule_handle(SCHEDULE_ID)
        await handle.backfill(
            ScheduleBackfill(
                start_at=now - timedelta(days=SWEEP_DAYS + 1),
                end_at=now - timedelta(days=1),
                overlap=ScheduleOverlapPolicy.ALLOW_ALL,
            )
        )

        def all_closed(runs: dict[str, str]) -> bool:
            return len(runs) >= SWEEP_DAYS and all(
                s != WorkflowExecutionStatus.RUNNING.name for s in runs.values()
            )

        sweeps = await eventually(lambda: sweep_runs(client), all_closed, wait)
        worker = stack.procs["worker"].popen
        return ScaleOut(
            figures=figures,
            schedules=schedules,
            sweeps=sweeps,
            sent_by_worker={"worker": sent(await log_of(stack, "worker")), "worker2": killed_sent},
            worker_alive=worker is not None and worker.poll() is None,
        )
    finally:
        await stack.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--journeys", type=int, default=300)
    parser.add_argument(
        "--speedup", type=float, default=10080, help="JOURNEY_SPEEDUP (7 d -> 60 s)"
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds for runs to close")
    args = parser.parse_args()
    result = asyncio.run(run(args.journeys, args.speedup, args.timeout))
    print(result, flush=True)
    sys.exit(0 if result.meets_targets() else 1)


if __name__ == "__main__":
    main()
