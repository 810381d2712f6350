"""Every recorded history (tests/histories/, made by scripts/record_histories.py) replays on
the current workflow code: a change that would break runs still in flight fails here."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from core.codec import ENCODING, KeyRing, encrypted_converter
from testkit.history import history_payloads
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


# --- histories recorded with payloads encrypted (scripts/record_encrypted_history.py) -------

# The fixed key they were recorded with: a test-only key, committed on purpose so they
# decrypt here; it protects nothing (make run makes its own development key in var/).
TEST_ONLY_PAYLOAD_KEYS = (
    "replay-test:" + base64.b64encode(b"replay-test-only-key-not-secret!").decode()
)
ENCRYPTED = sorted((HISTORIES / "encrypted").glob("*.json"))


def _encodings(path: Path) -> set[bytes]:
    """The encodings of the history's payloads (what is clear by design aside:
    testkit.history)."""
    payloads = history_payloads(json.loads(path.read_text()))
    return {base64.b64decode(p["metadata"]["encoding"]) for p in payloads}


def test_an_encrypted_history_is_recorded():
    assert ENCRYPTED, "scripts/record_encrypted_history.py writes tests/histories/encrypted/"
    for path in ENCRYPTED:
        assert _encodings(path) == {ENCODING}, path.name


@pytest.fixture(params=ENCRYPTED, ids=lambda p: p.stem)
def encrypted_history(request: pytest.FixtureRequest) -> WorkflowHistory:
    path: Path = request.param
    return WorkflowHistory.from_json(path.stem, path.read_text())


async def test_encrypted_history_replays_with_the_codec(encrypted_history: WorkflowHistory):
    history = encrypted_history
    converter = encrypted_converter(pydantic_data_converter, KeyRing.parse(TEST_ONLY_PAYLOAD_KEYS))
    with_codec = Replayer(workflows=list(WORKFLOWS), data_converter=converter)
    without = Replayer(workflows=list(WORKFLOWS), data_converter=pydantic_data_converter)

    replayed = await with_codec.replay_workflow(history, raise_on_replay_failure=False)
    unreadable = await without.replay_workflow(history, raise_on_replay_failure=False)

    assert replayed.replay_failure is None, (
        f"{history.workflow_id} no longer replays: {replayed.replay_failure}"
    )
    assert unreadable.replay_failure is not None  # the payloads really are encrypted
