"""The Temporal Schedule that runs the daily sweep (win-back and birthdays).

Created or updated idempotently: by the worker at start, and by ``python -m starter
schedule``. Its time and filters come from journeys/win_back.toml ([sweep], [selection]);
edit the file and restart the worker (or run the command) to apply them. It shows in the
Temporal UI under Schedules as ``daily-sweep``.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from core.contracts import SweepInput
from core.ids import DAILY_SWEEP
from core.lifecycle import LifecycleConfig
from journeys.config import BirthdayConfig, HolidayConfig, VipCareConfig, WinBackConfig
from journeys.loader import JourneyConfigs
from workflows.sweep import DailySweep

SCHEDULE_ID = DAILY_SWEEP


def daily_sweep_schedule(
    configs: JourneyConfigs, task_queue: str, *, lifecycle: LifecycleConfig | None = None
) -> Schedule:
    """``lifecycle`` (journeys/lifecycle.toml): the sweep brings stages up to date first."""
    win_back = configs.config("win_back", WinBackConfig)
    birthday = configs.config("birthday", BirthdayConfig)
    run_at = win_back.sweep.run_at
    return Schedule(
        action=ScheduleActionStartWorkflow(
            DailySweep.run,
            SweepInput(
                win_back=win_back,
                birthday=birthday,
                lifecycle=lifecycle,
                vip_care=configs.config("vip_care", VipCareConfig),
                holidays=configs.config("holidays", HolidayConfig),
            ),
            id=SCHEDULE_ID,  # the server adds the scheduled time to each run's id
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    hour=[ScheduleRange(run_at.hour)],
                    minute=[ScheduleRange(run_at.minute)],
                    comment=f"every day at {run_at:%H:%M} {win_back.sweep.time_zone}",
                )
            ],
            time_zone_name=win_back.sweep.time_zone,
        ),
        # Two sweeps never run at once; a missed one (server down) runs once when it is back.
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(hours=12)
        ),
        state=ScheduleState(note="win-back and birthday sweep (journeys/win_back.toml)"),
    )


async def ensure_daily_sweep(
    client: Client,
    configs: JourneyConfigs,
    task_queue: str,
    *,
    lifecycle: LifecycleConfig | None = None,
) -> str:
    """Create the schedule, or bring an existing one up to date; returns what was done."""
    schedule = daily_sweep_schedule(configs, task_queue, lifecycle=lifecycle)
    try:
        await client.create_schedule(SCHEDULE_ID, schedule)
    except ScheduleAlreadyRunningError:

        def updated(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(SCHEDULE_ID).update(updated)
        return "updated"
    return "created"
