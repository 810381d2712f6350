"""Scale-out (issue 18 item 5; ``python -m faults.scale_out`` runs it with 300 journeys, this
test with 40): two worker processes on one task queue and two API processes on their own
ports, on the dev server and PostgreSQL. Customers enter through both APIs (half each); one
worker is SIGKILLed mid-run and the other finishes: every cart-recovery email once per step (counted
by Message-ID at the relay), every run Completed, one daily-sweep schedule though both
workers created it at start, and one sweep run per day backfilled."""

from __future__ import annotations

import pytest

from faults.__main__ import row
from faults.scale_out import SWEEP_DAYS, run
from starter.schedule import SCHEDULE_ID

# The suite's relay asks for AUTH on a loopback connection without TLS, on purpose.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
    pytest.mark.timeout(900),
]

# Small enough for the suite (each run lasts about a minute of sped-up days whatever its
# size); ``python -m faults.scale_out`` runs 300.
JOURNEYS = 40


async def test_two_workers_and_two_apis_keep_every_guarantee() -> None:
    result = await run(journeys=JOURNEYS, speedup=10080, wait=600)
    f = result.figures
    # Both workers sent (the load was shared), and the one not killed lived to the end.
    assert all(n > 0 for n in result.sent_by_worker.values()), result.sent_by_worker
    assert result.worker_alive
    assert f.journeys == JOURNEYS
    assert f.duplicated == 0 and f.lost == 0 and f.unresolved == 0, row(f)
    assert f.delivered + f.uncertain == f.expected, row(f)
    assert f.not_completed == 0 and f.suppressed_by_mistake == 0, row(f)
    assert result.schedules == [SCHEDULE_ID]
    assert len(result.sweeps) == SWEEP_DAYS, result.sweeps
    assert set(result.sweeps.values()) == {"COMPLETED"}, result.sweeps
    assert result.meets_targets()
