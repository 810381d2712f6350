"""Every recorded history (tests/histories/, made by scripts/record_histories.py) replays on
the current workflow code: a change that would break runs still in flight fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import WORKFLOWS

HISTORIES = Path(__file__).parent / "histories"
RECORDED = sorted(HISTORIES.glob("*.json"))


def _workflow_type(path: Path) -> str:
    started = json.loads(path.read_text())["events"][0]
    return str(started["workflowExecutionStartedEventAttributes"]["workflowType"]["name"])


@pytest.fixture(params=RECORDED, ids=lambda p: p.stem)
def history(request: pytest.FixtureRequest) -> WorkflowHistory:
    path: Path = request.param
    return WorkflowHistory.from_json(path.stem, path.read_text())


async def test_recorded_history_replays_on_the_current_code(history: WorkflowHistory):
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=pydantic_data_converter)

    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)

    assert result.replay_failure is None, (
        f"{history.workflow_id} no longer replays: {result.replay_failure}"
    )


def test_every_journey_workflow_has_a_recorded_history():
    recorded = {_workflow_type(path) for path in RECORDED}
    journeys = {str(workflow._Definition.must_from_class(cls).name) for cls in WORKFLOWS}

    missing = sorted(journeys - recorded)
    assert missing == [], (
        f"no recorded history for {', '.join(missing)}: add their branches to "
        "scripts/record_histories.py and run it (docs/adding-a-journey.md, step 7)"
    )
