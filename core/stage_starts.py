"""Journeys that start on a lifecycle stage change (the event "Lifecycle Stage Changed",
a journey's ``[start_on]``): how each one's run is built, its id deterministic, for the
starter's event path (starter/ingest/lifecycle.py) and the daily sweep's
(activities/lifecycle.py) alike. Both then start it the one way (entry rules, id policy).

A journey is listed here when its run can be built from the customer and the time of the
change alone (VIP care); ``[start_on]`` in another journey's TOML starts nothing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.contracts import JourneyInput, VipCareInput
from core.ids import vip_care_id
from journeys.config import JourneyConfig, VipCareConfig


@dataclass(frozen=True)
class StageChange:
    """A change of a customer's stage as the store has it."""

    customer_id: str
    previous: str | None
    stage: str
    became_vip: bool
    at: datetime
    label: str | None  # the LifecycleStage search attribute


@dataclass(frozen=True)
class Startable:
    model: type[JourneyConfig]
    build: Callable[[JourneyConfig, StageChange], tuple[str, JourneyInput]]


def _vip_care(config: JourneyConfig, change: StageChange) -> tuple[str, JourneyInput]:
    """VIP care of the year of the change (the daily sweep's yearly start has the same id)."""
    assert isinstance(config, VipCareConfig)
    year = change.at.year
    inp = VipCareInput(
        customer_id=change.customer_id, config=config, year=year, lifecycle_stage=change.label
    )
    return vip_care_id(change.customer_id, year), inp


STAGE_STARTS: dict[str, Startable] = {
    "vip_care": Startable(VipCareConfig, _vip_care),
}


def starts_on(
    change: StageChange, configs: Mapping[str, JourneyConfig | None]
) -> list[tuple[str, JourneyInput]]:
    """The runs this change starts: (workflow id, input) for each journey of ``configs``
    that the table can start and whose ``[start_on]`` matches the change."""
    runs = []
    for name, config in configs.items():
        startable = STAGE_STARTS.get(name)
        trigger = config.start_on if config is not None else None
        if startable is None or config is None or trigger is None:
            continue
        if trigger.matches(
            previous=change.previous, stage=change.stage, became_vip=change.became_vip
        ):
            runs.append(startable.build(config, change))
    return runs


def stage_change_properties(
    previous: str | None, stage: str, vip: bool, became_vip: bool
) -> dict[str, Any]:
    """What the event log keeps of a stage change: Segment-style ``from`` and ``to``, and
    ``previous``/``stage`` as rows before them had."""
    return {
        "from": previous,
        "to": stage,
        "previous": previous,
        "stage": stage,
        "vip": vip,
        "became_vip": became_vip,
    }
