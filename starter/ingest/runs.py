"""How the outbox relay reaches journeys: start one (through core.starting, the one way)
or signal a live run; and which runs a customer may be in (told when they order or leave).

Handlers never call these: they write the work to the outbox (``Call.start``/``signal``/
``tell`` in service.py) and starter/outbox.py delivers it after the commit."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from core.contracts import JourneyInput
from core.ids import win_back_id, workflow_id
from core.starting import start_journey
from store.models import Customer

# Journeys a customer can be in right now, one run each: each is told when the customer
# orders or leaves. (Win-back runs have an id per lapse: ``live_runs`` adds the current one;
# birthday runs are one email, the send gate stops them.)
LIVE_JOURNEYS = (
    "cart_recovery",
    "welcome_series",
    "new_customer_nurture",
    "browse_follow_up",
    "stimulation",
)


def live_runs(customer: Customer) -> list[str]:
    """Every run the customer may be in now: one per live journey, and their win-back."""
    ids = [workflow_id(journey, customer.id) for journey in LIVE_JOURNEYS]
    if customer.winback_for:
        ids.append(win_back_id(customer.id, customer.winback_for))
    return ids


class Runs:
    def __init__(self, client: Client, *, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue

    @property
    def client(self) -> Client:
        return self._client

    @property
    def task_queue(self) -> str:
        return self._task_queue

    async def start(
        self,
        inp: JourneyInput,
        *,
        signal: tuple[str, BaseModel] | None = None,
        run_id: str | None = None,
    ) -> bool:
        """Start the journey (``signal``: signal-with-start, so a live run gets the signal
        instead); False when its id policy refused a second run."""
        return await start_journey(
            self._client, inp, task_queue=self._task_queue, signal=signal, run_id=run_id
        )

    async def signal(self, wf_id: str, signal: str, arg: BaseModel) -> bool:
        """Signal the live run; False when there is none (NOT_FOUND: nobody to tell)."""
        try:
            await self._client.get_workflow_handle(wf_id).signal(signal, arg)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True
