"""The lifecycle's numbers as the journeys get them: stage caps under JOURNEY_SPEEDUP."""

from __future__ import annotations

from datetime import timedelta

from journeys.loader import JourneyLoader
from settings import ROOT


def test_journey_speedup_shortens_the_stage_caps_like_every_other_wait() -> None:
    """JOURNEY_SPEEDUP (demos) divides the stage's cap window and the longest wait of a
    deferred send, as it does the steps' delays and the journey's own cap."""
    plain = JourneyLoader(ROOT / "journeys").config("cart_recovery")
    fast = JourneyLoader(ROOT / "journeys", speedup=3600).config("cart_recovery")

    assert plain.stage_caps["sleeping"].window == timedelta(days=30)
    assert fast.stage_caps["sleeping"].window == timedelta(days=30) / 3600
    assert fast.stage_caps["sleeping"].max_emails == plain.stage_caps["sleeping"].max_emails
    assert fast.frequency_cap.window == plain.frequency_cap.window / 3600
    assert [s.cap_wait for s in fast.steps] == [s.cap_wait / 3600 for s in plain.steps]
