"""core.ids: the one place ids are built and read back (pure, no stack)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.ids import journey_of, stage_change_id, win_back_id, workflow_id

JOURNEYS = sorted(p.stem for p in (Path(__file__).parent.parent / "journeys").glob("*.toml"))


@pytest.mark.parametrize("journey", JOURNEYS)
def test_the_journey_is_read_back_from_its_workflow_ids(journey):
    assert journey_of(workflow_id(journey, "c-42")) == journey
    assert journey_of(workflow_id(journey, "ada@example.com")) == journey  # a hashed ref


def test_the_journey_of_a_run_per_lapse_is_its_journey():
    assert journey_of(win_back_id("c-42", datetime(2026, 1, 31, tzinfo=UTC))) == "win_back"


def test_a_stage_change_has_one_message_id_whoever_records_it():
    """The sweep's record and the shop's event of the same change dedupe on this id: its
    shape is kept (rows already stored carry it)."""
    at = datetime(2026, 3, 1, 4, 5, 6, 789, tzinfo=UTC)
    assert stage_change_id("c-1", "lapsed", True, at) == "lifecycle:c-1:lapsed:vip:20260301T040506"
    assert stage_change_id("c-1", "lapsed", False, at) == "lifecycle:c-1:lapsed::20260301T040506"
