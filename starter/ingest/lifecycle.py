"""The lifecycle stage on the event path: an order recomputes the customer's stage
(core/lifecycle.py) in the order's transaction; a change is recorded as the event
"Lifecycle Stage Changed" through the event table, where journeys may start on it.

The daily sweep moves stages as time passes (store/lifecycle.py, set-based); those changes
are written to the event log by the sweep (activities/lifecycle.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from core.lifecycle import LifecycleConfig, lifecycle_of, load_lifecycle
from core.stage_starts import STAGE_STARTS, StageChange, starts_on
from starter.ingest.events import LifecycleStageChanged
from starter.ingest.service import Call, Handled, Took, done, record
from store import lifecycle as stages

STAGE_CHANGED = "Lifecycle Stage Changed"
SIGNALLED_OR_STARTED = Took("started", "recorded")

_cache: dict[Path, tuple[float, LifecycleConfig]] = {}


def lifecycle_config(journeys_dir: Path) -> LifecycleConfig:
    """``journeys/lifecycle.toml``, read again when the file changes."""
    path = journeys_dir / "lifecycle.toml"
    mtime = path.stat().st_mtime if path.exists() else -1.0
    cached = _cache.get(journeys_dir)
    if cached is None or cached[0] != mtime:
        cached = (mtime, load_lifecycle(journeys_dir))
        _cache[journeys_dir] = cached
    return cached[1]


async def refresh_stage(call: Call, *, now: datetime | None = None) -> LifecycleStageChanged | None:
    """Recompute and store the customer's stage; on a change, record and handle "Lifecycle
    Stage Changed" in this transaction (its journeys start after the commit)."""
    at = now or datetime.now(UTC)
    config = lifecycle_config(call.ingest.settings.journeys_dir)
    facts = await stages.facts(call.s, call.customer)
    now_in = lifecycle_of(facts, at, config)
    change = stages.set_stage(call.customer, stage=now_in.stage, vip=now_in.vip, at=at)
    if change is None:
        return None
    event = LifecycleStageChanged(
        customer_id=call.customer.id,
        stage=now_in.stage,
        previous=change.previous,
        vip=change.vip,
        became_vip=change.became_vip,
        occurred_at=at,
    )
    if await record(call.s, STAGE_CHANGED, event):
        await stage_changed(call, event)
    return event


async def stage_changed(call: Call, e: LifecycleStageChanged) -> Handled:
    """A stage change: the journeys whose ``[start_on]`` matches it start here
    (core/stage_starts.py), with their entry rules. Only a change the store confirms (the
    stored stage, or VIP, since this event's time) starts anything: a call from outside
    claiming one is recorded and does nothing."""
    customer = call.customer
    moved = customer.stage == e.stage and _same_time(customer.stage_since, e.occurred_at)
    became_vip = e.became_vip and _same_time(customer.vip_since, e.occurred_at)
    if not (moved or became_vip):
        return done(e, "recorded")
    change = StageChange(
        customer_id=customer.id,
        previous=e.previous,
        stage=e.stage if moved else (customer.stage or e.stage),
        became_vip=became_vip,
        at=e.occurred_at,
        label=stages.stage_label(customer),
    )
    configs = {name: call.config(name, s.model) for name, s in STAGE_STARTS.items()}
    runs = starts_on(change, configs)
    for run_id, inp in runs:
        await call.start(inp, run_id=run_id)
    if runs:
        return done(e, SIGNALLED_OR_STARTED, workflow_id=runs[0][0])
    return done(e, "recorded")


def _same_time(stored: datetime | None, at: datetime) -> bool:
    """A stored time (naive from SQLite: UTC) is the event's."""
    if stored is None:
        return False
    return (stored if stored.tzinfo else stored.replace(tzinfo=UTC)) == at
